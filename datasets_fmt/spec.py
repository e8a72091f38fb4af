"""The recipe's ``data:`` block as the loader reads it, and what the block may say.

Its defaults live in ``recipes/_base.yml`` only; :func:`data_block_problem` is what ``make
check`` runs on it before anything heavy (training/checks.py names the file that sets the key).
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets_fmt.columns import EXAMPLE, column_map_problem
from datasets_fmt.splits import fractions_problem

HUB = "hub"  # data.location of a built-in corpus: its own hub dataset
CUSTOM = "custom"  # data.corpus of your own data, read through data.column_map


@dataclass(frozen=True)
class DataSpec:
    """Where a split's records come from and how they are read."""

    corpus: str
    location: str | None  # hub, a hub dataset id, a local file or folder
    train_split: str
    column_map: dict | None = None
    split_fractions: dict[str, float] | None = None
    split_seed: int | None = None

    @classmethod
    def from_block(cls, data: dict) -> DataSpec:
        return cls(
            data["corpus"],
            data["location"],
            data["train_split"],
            data["column_map"],
            data["split_fractions"],
            data["split_seed"],
        )


def data_block_problem(data: dict, evaluation_split: str) -> tuple[str, str] | None:
    """The first thing the ``data:`` block gets wrong, as (dotted key, one-line problem)."""
    corpus, column_map = data["corpus"], data["column_map"]
    if corpus == CUSTOM:
        if column_map is None:
            return (
                "data.corpus",
                f"data.corpus: custom needs data.column_map, your column for each field: {EXAMPLE}",
            )
        problem = column_map_problem(column_map)
        if problem:
            return "data.column_map", problem
        if data["location"] in (None, "", HUB):
            return "data.corpus", (
                "data.corpus: custom needs data.location (or DATA_DIR): a .jsonl, .json, .csv or .parquet "
                "file, a folder of <split> files, or a hub dataset id"
            )
    elif column_map is not None:
        return "data.column_map", (
            f"data.column_map is for data.corpus: custom; {corpus} reads its own fields "
            "(set data.corpus: custom to map your columns)"
        )
    if data["split_fractions"] is None:
        return None
    seed = data["split_seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return "data.split_seed", f"data.split_seed: {seed!r} cannot be used: it must be a whole number >= 0"
    return fractions_problem(
        data["split_fractions"],
        {
            "data.train_split": data["train_split"],
            "data.validation_split": data["validation_split"],
            "evaluation.split": evaluation_split,
        },
    )
