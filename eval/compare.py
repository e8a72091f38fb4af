"""One table of base vs fine-tuned scores for one or more evaluated runs (make compare).

python scripts/compare.py runs/demo [runs/other ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows_for(run: Path) -> list[str] | None:
    path = run / "eval" / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    return (
        [
            f"| {run.name} | {system} | {agg} | {m['n']} | "
            + " | ".join(f"{m['scores'][agg][k][system]['mean']:6.2f}" for k in m["keys"])
            + " |"
            for agg in ("mean", "best")
            for system in ("base", "finetuned")
        ],
        m["keys"],
        m["labels"],
    )


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:]) or ["runs/demo"]]
    found = [r for r in map(rows_for, paths) if r]
    if not found:
        print(
            f"no evaluated runs among {', '.join(map(str, paths))}: run `make eval RECIPE=...` first",
            file=sys.stderr,
        )
        return 1
    keys, labels = found[0][1], found[0][2]
    print("| run | model | references | n | " + " | ".join(labels[k] for k in keys) + " |")
    print("|---|---|---|---|" + "---|" * len(keys))
    for rows, run_keys, _ in found:
        if run_keys == keys:
            print("\n".join(rows))
    return 0
