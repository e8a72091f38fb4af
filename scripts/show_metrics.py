"""Print base vs fine-tuned ROUGE for one or more evaluated runs, as one table.

python scripts/show_metrics.py runs/demo [runs/other ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def main(paths: list[str]) -> int:
    rows = []
    for arg in paths:
        metrics = Path(arg) / "eval" / "metrics.json"
        if not metrics.exists():
            continue
        m = json.loads(metrics.read_text())
        for agg in ("mean", "best"):
            for system in ("base", "finetuned"):
                cells = [f"{m['scores'][agg][k][system]['mean']:6.2f}" for k in METRICS]
                rows.append(f"| {Path(arg).name} | {system} | {agg} | {m['n']} | " + " | ".join(cells) + " |")
    if not rows:
        print(
            f"no evaluated runs among {', '.join(paths)}: run `make eval RECIPE=...` first", file=sys.stderr
        )
        return 1
    print("| run | model | references | n | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["runs/demo"]))
