"""Compare evaluations: base vs fine-tuned scores of several runs as one table (make compare),
or two evaluations of the same items text by text (make compare TEXTS=1 RUNS="a b"), to see how much a
repeated or changed evaluation moves.

    python scripts/compare.py runs/demo [runs/other ...]
    python scripts/compare.py --texts runs/demo/eval runs/demo/eval-again
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SYSTEMS = ("base", "finetuned")


def metrics_of(folder: Path) -> dict | None:
    """metrics.json of an evaluation folder, or of a run's default one (<run>/eval)."""
    for path in (folder / "metrics.json", folder / "eval" / "metrics.json"):
        if path.exists():
            return json.loads(path.read_text())
    return None


def score_rows(name: str, m: dict) -> list[str]:
    return [
        f"| {name} | {system} | {agg} | {m['n']} | "
        + " | ".join(f"{m['scores'][agg][k][system]['mean']:6.2f}" for k in m["keys"])
        + " |"
        for agg in ("mean", "best")
        for system in SYSTEMS
    ]


def score_table(folders: list[Path]) -> int:
    found = [(f, m) for f in folders if (m := metrics_of(f))]
    if not found:
        print(
            f"no evaluated runs among {', '.join(map(str, folders))}: run `make eval RECIPE=...` first",
            file=sys.stderr,
        )
        return 1
    keys, labels = found[0][1]["keys"], found[0][1]["labels"]
    print("| run | model | references | n | " + " | ".join(labels[k] for k in keys) + " |")
    print("|---|---|---|---|" + "---|" * len(keys))
    for folder, m in found:
        if m["keys"] == keys:
            print("\n".join(score_rows(folder.name, m)))
    return 0


def predictions_of(folder: Path) -> dict[str, dict]:
    path = folder / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give two evaluation folders (e.g. runs/demo/eval)")
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def text_changes(a: Path, b: Path) -> dict:
    """Per system: items whose generated text differs between two evaluations of the same items,
    and how far the headline score moved."""
    rows_a, rows_b = predictions_of(a), predictions_of(b)
    common = sorted(set(rows_a) & set(rows_b))
    ma, mb = metrics_of(a), metrics_of(b)
    key = ma["keys"][0]
    out = {"items": len(common)}
    for system in SYSTEMS:
        changed = sum(rows_a[i][system]["text"] != rows_b[i][system]["text"] for i in common)
        moved = {
            agg: mb["scores"][agg][key][system]["mean"] - ma["scores"][agg][key][system]["mean"]
            for agg in ("mean", "best")
        }
        out[system] = {"changed": changed, "share": changed / len(common), f"{key}_moved": moved}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("runs/demo")])
    parser.add_argument("--texts", action="store_true", help="compare two evaluations text by text")
    args = parser.parse_args(argv)
    if not args.texts:
        return score_table(args.folders)
    if len(args.folders) != 2:
        parser.error("--texts compares exactly two evaluation folders")
    try:
        result = text_changes(*args.folders)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for system in SYSTEMS:
        r = result[system]
        moved = ", ".join(
            f"{agg} {v:+.2f}" for agg, v in next(v for k, v in r.items() if k.endswith("_moved")).items()
        )
        print(
            f"{system}: {r['changed']} of {result['items']} texts differ ({r['share']:.1%}); headline score moved {moved}"
        )
    return 0
