"""Predictions that survive a crash: each finished batch is appended and synced, so an
interrupted evaluation resumes where it stopped instead of regenerating."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from datasets_fmt import atomic


class PartialPredictions:
    """``<name>.partial.jsonl``: one JSON object per finished item, keyed by ``id``. Kept after
    the evaluation finishes: a re-run with the same settings reads it instead of generating,
    and a sweep takes its base outputs from an earlier point's log."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict] = {}
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by a crash: it and anything after are regenerated
            self.done[row["id"]] = row
        if len(self.done) < len(lines):
            atomic.write_jsonl(path, self.done.values())

    def append(self, rows: Iterable[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.done[row["id"]] = row
            fh.flush()
            os.fsync(fh.fileno())
