"""Publish an evaluation's generations so anyone can re-score them against their own copy of
the data: one line per item with its id and the generated texts, and nothing of the
dataset's own text (dialogues and references keep their licence).

    python scripts/publish.py runs/smollm2-dialogsum-full/eval results/predictions/smollm2-dialogsum-full.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datasets_fmt import atomic

SYSTEMS = ("base", "finetuned")


def public_rows(predictions: Path) -> list[dict]:
    """id and generated text per system, in the evaluation's order."""
    rows = []
    for line in predictions.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows.append({"id": row["id"], **{s: row[s]["text"] for s in SYSTEMS}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path, help="an evaluation folder (holds predictions.jsonl)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    predictions = args.eval_dir / "predictions.jsonl"
    if not predictions.exists():
        print(f"error: {predictions} does not exist: run `make eval` first", file=sys.stderr)
        return 2
    rows = public_rows(predictions)
    atomic.write_jsonl(args.out, rows)
    print(f"wrote {args.out} ({len(rows)} items: ids and generated texts only)")
    return 0
