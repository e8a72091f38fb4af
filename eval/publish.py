"""Publish an evaluation's generations so anyone can re-score them against their own copy of
the data: one line per item with its id and the generated texts, and nothing of the
dataset's own text (dialogues and references keep their licence).

    python scripts/publish.py runs/smollm2-dialogsum-full/eval results/predictions/smollm2-dialogsum-full.jsonl

and check such a file against the dialogues for facts they do not state (``faithfulness``):

    python scripts/check_faithfulness.py results/predictions/smollm2-dialogsum-full.jsonl --data-dir ~/data
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


def dialogues_by_id(corpus: str, split: str, data_dir: str | None) -> dict[str, str]:
    """The user's own copy of a split's dialogues, by id: what published files are joined with."""
    from datasets_fmt.sources import load_examples

    return {ex.id: ex.source for ex in load_examples(corpus, split, data_dir).examples}


def check_published(published: Path, dialogues: dict[str, str]) -> dict:
    """The source checks of every system in a published file, its items joined by id with
    ``dialogues``."""
    from eval.metrics import check_sources, get_source_checks

    rows = [json.loads(line) for line in published.read_text(encoding="utf-8").splitlines()]
    missing = [r["id"] for r in rows if r["id"] not in dialogues]
    if missing:
        raise ValueError(f"{published}: {len(missing)} ids are not in the data (first: {missing[0]})")
    systems = {s: [r[s] for r in rows] for s in SYSTEMS}
    return check_sources(get_source_checks(["faithfulness"]), systems, [dialogues[r["id"]] for r in rows])


def faithfulness_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Facts a published file's summaries state that their dialogues do not."
    )
    parser.add_argument("published", type=Path, nargs="+", help="files written by scripts/publish.py")
    parser.add_argument("--data-dir", help="your copy of the data (default: the HF hub)")
    parser.add_argument("--corpus", default="dialogsum")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    from eval.report import pct_ci  # with numpy: loaded for this command only

    try:
        dialogues = dialogues_by_id(args.corpus, args.split, args.data_dir)
        results = {published: check_published(published, dialogues) for published in args.published}
    except (ValueError, OSError) as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| file | base flagged | fine-tuned flagged | difference (points) |\n| --- | --- | --- | --- |")
    for published, checks in results.items():
        result = checks["faithfulness"]
        share, diff = result["share"], result["difference"]
        cells = [pct_ci(share[s]) for s in SYSTEMS]
        gap = f"{100 * diff['diff']:+.1f} [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]"
        print(f"| `{published.name}` | {cells[0]} | {cells[1]} | {gap} |")
    return 0


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
