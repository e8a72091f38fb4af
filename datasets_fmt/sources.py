"""Load a split of DialogSum, SAMSum, Dolly-15k or your own data from the Hugging Face hub, a
local folder or a file. Training and evaluation both read through :func:`load_data`.

Every split becomes a list of :class:`~datasets_fmt.records.Example`. Your own data
(``corpus: custom``) is any JSON lines, JSON, CSV or Parquet file or hub dataset, read through
``data.column_map`` (:mod:`datasets_fmt.columns`). Malformed input (bad JSON or CSV, invalid
UTF-8, a missing column or a non-string field) stops with a :class:`DataError` naming file,
record and field. Records that are well-formed but unusable (an empty dialogue or summary) are
skipped and counted, and the count is reported: never silently.

One file has no named splits: it is the train split, and another split comes from it only by a
seeded, recorded cut (``data.split_fractions``, :mod:`datasets_fmt.splits`); asked for any other
split without one, it is refused, never served again as held-out data.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets_fmt.columns import check_columns, column_map_parser
from datasets_fmt.readers import SUFFIXES, Table, read_file, read_hub
from datasets_fmt.records import DataError, Example, Skip, record_id, text_field
from datasets_fmt.spec import CUSTOM, HUB, DataSpec
from datasets_fmt.splits import check_sides, cut, split_record

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name


@dataclass(frozen=True)
class Corpus:
    name: str
    hub_id: str | None
    # split -> file name in a local copy; None (your own data): <split>.jsonl/.json/.csv/.parquet
    files: dict[str, str] | None
    parse: Callable[[str, str, dict, str], Example | None]  # (file, record, raw, split)

    def file_names(self, split: str) -> tuple[str, ...]:
        if self.files is None:
            return tuple(f"{split}{suffix}" for suffix in SUFFIXES)
        if split not in self.files:
            raise ValueError(f"{self.name} has no '{split}' split: choose one of {', '.join(self.files)}")
        return (self.files[split],)


@dataclass
class Loaded:
    examples: list[Example]
    source: str
    origin: str = ""  # the file, or "<hub id> [<split>]", the records came from
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)
    split_record: dict | None = None  # what a cut by data.split_fractions gave (run.yml records it)

    def skipped_note(self) -> str:
        reasons = ", ".join(
            f"{n} with {why} (first at {self.first_skipped[why]})" for why, n in sorted(self.skipped.items())
        )
        return f"skipped {sum(self.skipped.values())} record(s) of {self.source}: {reasons}"


def _dialogsum(file: str, record: str, raw: dict, split: str) -> Example:
    dialogue = text_field(file, record, raw, "dialogue")
    if "summary1" in raw:  # the local test split: three human references per dialogue
        refs = [text_field(file, record, raw, f"summary{i}") for i in (1, 2, 3)]
    else:
        refs = [text_field(file, record, raw, "summary")]
    return Example(
        id=record_id(raw, ("fname", "id"), record),
        source=dialogue,
        target=refs[0],
        references=tuple(refs),
    )


def _samsum(file: str, record: str, raw: dict, split: str) -> Example:
    dialogue = text_field(file, record, raw, "dialogue")
    summary = text_field(file, record, raw, "summary")
    return Example(id=record_id(raw, ("id",), record), source=dialogue, target=summary)


def _dolly(file: str, record: str, raw: dict, split: str) -> Example:
    return Example(
        id=record_id(raw, ("id",), record),
        instruction=text_field(file, record, raw, "instruction"),
        source=text_field(file, record, raw, "context", required=False),
        target=text_field(file, record, raw, "response"),
    )


CORPORA: dict[str, Corpus] = {
    "dialogsum": Corpus(
        "dialogsum",
        "knkarthick/dialogsum",
        {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
        _dialogsum,
    ),
    "samsum": Corpus(
        "samsum",
        "Samsung/samsum",
        {"train": "train.json", "validation": "val.json", "test": "test.json"},
        _samsum,
    ),
    "dolly": Corpus(
        "dolly",
        "databricks/databricks-dolly-15k",
        {"train": "databricks-dolly-15k.jsonl"},
        _dolly,
    ),
}


CORPUS_NAMES = (*CORPORA, CUSTOM)


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus '{name}': choose one of {', '.join(CORPUS_NAMES)}")
    return CORPORA[name]


def corpus_of(spec: DataSpec) -> Corpus:
    if spec.corpus == CUSTOM:
        return Corpus(CUSTOM, None, None, column_map_parser(spec.column_map or {}))
    return get_corpus(spec.corpus)


def is_hub_id(location: str) -> bool:
    """``owner/name`` that names no local path and no data file: a Hugging Face hub dataset."""
    path = Path(location)
    return bool(HUB_ID.fullmatch(location)) and not path.exists() and path.suffix.lower() not in SUFFIXES


def one_file(spec: DataSpec) -> Path | None:
    """The data file, where the location is one."""
    if spec.location in (None, "", HUB):
        return None
    path = Path(spec.location)
    return path if path.is_file() else None


def check_apart(spec: DataSpec, split: str) -> None:
    """Refuse ``split`` where it would be the train file again (one file, no cut)."""
    path = one_file(spec)
    if path is None or spec.split_fractions or split == spec.train_split:
        return
    raise DataError(
        str(path),
        None,
        None,
        f"one file without named splits is the {spec.train_split} split; the '{split}' split cannot come "
        "from it too (the model would be scored on the records it trained on): set data.split_fractions, "
        "e.g. {train: 0.8, validation: 0.1, test: 0.1} (a seeded split, recorded in run.yml), or give a "
        "folder with a file per split",
    )


def resolve_local(corpus: Corpus, split: str, location: str | Path) -> Path:
    """A data file, or the split's file in ``location/<corpus>/`` or ``location/``."""
    loc = Path(location)
    if loc.is_file():
        return loc
    if loc.suffix.lower() in SUFFIXES:
        raise FileNotFoundError(f"{loc}: no such file")
    names = corpus.file_names(split)
    for candidate in (folder / name for folder in (loc / corpus.name, loc) for name in names):
        if candidate.is_file():
            return candidate
    expected = (
        f"{loc / corpus.name / names[0]} or {loc / names[0]}"
        if len(names) == 1
        else f"{loc / names[0]} (or .json, .csv, .parquet)"
    )
    raise FileNotFoundError(
        f"no {corpus.name} {split} file under {loc}: expected {expected}. "
        "Point DATA_DIR at a folder holding them, or use DATA_DIR=hub."
    )


def _table(corpus: Corpus, spec: DataSpec, split: str) -> Table:
    location = spec.location
    if location in (None, "", HUB):
        if corpus.hub_id is None:
            raise ValueError(
                "data.corpus: custom needs data.location (or DATA_DIR): a file, a folder or a hub id"
            )
        return read_hub(corpus.hub_id, split)
    if is_hub_id(str(location)):
        return read_hub(str(location), split)
    check_apart(spec, split)
    return read_file(resolve_local(corpus, split, location))


def _merge_repeated_dialogues(examples: list[Example]) -> list[Example]:
    """The hub's DialogSum test split repeats each dialogue once per reference: fold them."""
    merged: dict[str, Example] = {}
    for ex in examples:
        if ex.source in merged:
            first = merged[ex.source]
            merged[ex.source] = Example(
                first.id, first.source, first.target, first.references + ex.references, first.instruction
            )
        else:
            merged[ex.source] = ex
    return list(merged.values())


def _load_split(spec: DataSpec, split: str) -> Loaded:
    """One named split of the source, validated record by record."""
    corpus = corpus_of(spec)
    table = _table(corpus, spec, split)
    if spec.corpus == CUSTOM and table.columns is not None:
        check_columns(table.name, table.columns, spec.column_map)
    file = table.name
    loaded = Loaded(examples=[], source=f"{corpus.name} {split} ({file})", origin=file)
    seen: dict[str, str] = {}
    for record, raw in table.rows:
        try:
            example = corpus.parse(file, record, raw, split)
        except Skip as why:
            loaded.skipped[str(why)] += 1
            loaded.first_skipped.setdefault(str(why), record)
            continue
        if example.id in seen:
            raise DataError(
                file,
                record,
                "id",
                f"duplicate id '{example.id}' (first seen at {seen[example.id]}); ids must be unique",
            )
        seen[example.id] = record
        loaded.examples.append(example)
    if corpus.name == "dialogsum" and split == "test":
        loaded.examples = _merge_repeated_dialogues(loaded.examples)
    if loaded.skipped:
        log.warning(loaded.skipped_note())
    if not loaded.examples:
        raise DataError(
            file,
            None,
            None,
            f"no usable records in the {split} split"
            + (f" ({loaded.skipped_note()})" if loaded.skipped else ""),
        )
    return loaded


def _cut_split(spec: DataSpec, split: str) -> Loaded:
    """``split`` of the seeded cut of the source's train split (or its one file)."""
    whole = _load_split(spec, spec.train_split)
    fractions, seed = spec.split_fractions, spec.split_seed
    if split not in fractions:
        raise DataError(
            whole.origin,
            None,
            None,
            f"no '{split}' split: data.split_fractions cuts it into {', '.join(fractions)}",
        )
    sides = cut(whole.examples, fractions, seed)
    check_sides(whole.origin, fractions, sides)
    return Loaded(
        sides[split],
        f"{spec.corpus} {split} ({whole.origin}: a {fractions[split]:g} share, seed {seed})",
        whole.origin,
        whole.skipped,
        whole.first_skipped,
        split_record(whole.origin, fractions, seed, sides),
    )


def load_data(spec: DataSpec, split: str) -> Loaded:
    """One split of the data a recipe's ``data:`` block names."""
    return _cut_split(spec, split) if spec.split_fractions else _load_split(spec, split)


def load_examples(corpus_name: str, split: str, location: str | Path | None = None) -> Loaded:
    """One split of a built-in corpus. ``location`` is ``hub`` (default), a folder, or a file
    (the train split)."""
    return load_data(DataSpec(corpus_name, None if location is None else str(location), "train"), split)
