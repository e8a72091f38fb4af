"""Load DialogSum, SAMSum and Dolly-15k from the Hugging Face hub, a local folder or a file.

Every corpus becomes a list of :class:`~datasets_fmt.records.Example`. Malformed input
(bad JSON, invalid UTF-8, a missing or non-string field) stops with a :class:`DataError`
naming file, record and field. Records that are well-formed but unusable (an empty
dialogue or summary) are skipped and counted, and the count is reported: never silently.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datasets_fmt.records import DataError, Example

log = logging.getLogger(__name__)

HUB = "hub"

Row = tuple[str, dict]  # (record label for error messages, raw record)


@dataclass(frozen=True)
class Corpus:
    name: str
    hub_id: str
    files: dict[str, str]  # split -> file name in a local copy
    parse: Callable[[str, str, dict, str], Example | None]  # (file, record, raw, split)


@dataclass
class Loaded:
    examples: list[Example]
    source: str
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)

    def skipped_note(self) -> str:
        reasons = ", ".join(
            f"{n} with {why} (first at {self.first_skipped[why]})" for why, n in sorted(self.skipped.items())
        )
        return f"skipped {sum(self.skipped.values())} record(s) of {self.source}: {reasons}"


class Skip(Exception):
    """A well-formed record that cannot be trained or scored on (counted, not fatal)."""


def _text(file: str, record: str, raw: dict, key: str, required: bool = True) -> str:
    if key not in raw or raw[key] is None:
        if not required:
            return ""
        present = ", ".join(sorted(raw)) or "none"
        raise DataError(file, record, key, f"missing (fields present: {present})")
    value = raw[key]
    if not isinstance(value, str):
        raise DataError(file, record, key, f"expected a string, got {type(value).__name__}")
    value = value.replace("\r\n", "\n").strip()
    if required and not value:
        raise Skip(f"empty {key}")
    return value


def _record_id(raw: dict, keys: Iterable[str], fallback: str) -> str:
    for key in keys:
        if raw.get(key) not in (None, ""):
            return str(raw[key])
    return fallback


def _dialogsum(file: str, record: str, raw: dict, split: str) -> Example:
    dialogue = _text(file, record, raw, "dialogue")
    if "summary1" in raw:  # the local test split: three human references per dialogue
        refs = [_text(file, record, raw, f"summary{i}") for i in (1, 2, 3)]
    else:
        refs = [_text(file, record, raw, "summary")]
    return Example(
        id=_record_id(raw, ("fname", "id"), record),
        source=dialogue,
        target=refs[0],
        references=tuple(refs),
    )


def _samsum(file: str, record: str, raw: dict, split: str) -> Example:
    dialogue = _text(file, record, raw, "dialogue")
    summary = _text(file, record, raw, "summary")
    return Example(id=_record_id(raw, ("id",), record), source=dialogue, target=summary)


def _dolly(file: str, record: str, raw: dict, split: str) -> Example:
    return Example(
        id=_record_id(raw, ("id",), record),
        instruction=_text(file, record, raw, "instruction"),
        source=_text(file, record, raw, "context", required=False),
        target=_text(file, record, raw, "response"),
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


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus '{name}': choose one of {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as fh:
        for lineno, raw_line in enumerate(fh, start=1):
            try:  # utf-8-sig: a byte-order mark (spreadsheet tools write one) is not data
                line = raw_line.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    str(path),
                    f"line {lineno}",
                    None,
                    f"invalid UTF-8 ({err.reason} at byte {err.start} of the line); re-encode the file as UTF-8",
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    str(path), f"line {lineno}", None, f"malformed JSON: {err.msg} at character {err.pos + 1}"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    str(path), f"line {lineno}", None, f"expected a JSON object, got {type(obj).__name__}"
                )
            yield f"line {lineno}", obj


def _read_json_array(path: Path) -> Iterator[Row]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            str(path), None, None, f"invalid UTF-8 at byte {err.start}; re-encode the file as UTF-8"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            str(path), f"line {err.lineno}", None, f"malformed JSON: {err.msg} at character {err.pos + 1}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(str(path), None, None, "expected a JSON array of records (or JSON lines)")
    for index, obj in enumerate(data):
        label = f"index {index}" + (f" (id {obj['id']})" if isinstance(obj, dict) and "id" in obj else "")
        if not isinstance(obj, dict):
            raise DataError(str(path), label, None, f"expected a JSON object, got {type(obj).__name__}")
        yield label, obj


def read_records(path: Path) -> Iterator[Row]:
    """JSON lines or one JSON array, told apart by the first non-blank character."""
    with path.open("rb") as fh:
        head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return (
        _read_json_array(path) if head.startswith(b"[") or head.startswith(b'{"data"') else _read_jsonl(path)
    )


def resolve_local(corpus: Corpus, split: str, location: str | Path) -> Path:
    """A data file, or the split's file in ``location/<corpus>/`` or ``location/``."""
    loc = Path(location)
    if loc.is_file():
        return loc
    if split not in corpus.files:
        raise ValueError(f"{corpus.name} has no '{split}' split: choose one of {', '.join(corpus.files)}")
    for candidate in (loc / corpus.name / corpus.files[split], loc / corpus.files[split]):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {corpus.name} {split} file under {loc}: expected {loc / corpus.name / corpus.files[split]} "
        f"or {loc / corpus.files[split]}. Point DATA_DIR at a folder holding them, or use DATA_DIR=hub."
    )


def _hub_rows(corpus: Corpus, split: str) -> Iterator[Row]:
    from datasets import load_dataset  # heavy; only for hub loading

    hub_split = {"validation": "validation", "test": "test"}.get(split, split)
    dataset = load_dataset(corpus.hub_id, split=hub_split)
    for index, row in enumerate(dataset):
        yield f"row {index}", dict(row)


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


def load_examples(corpus_name: str, split: str, location: str | Path | None = None) -> Loaded:
    """Load one split. ``location`` is ``hub`` (default), a folder, or a file."""
    corpus = get_corpus(corpus_name)
    if location in (None, "", HUB):
        file, rows = f"{corpus.hub_id} [{split}]", _hub_rows(corpus, split)
    else:
        path = resolve_local(corpus, split, location)
        file, rows = str(path), read_records(path)
    loaded = Loaded(examples=[], source=f"{corpus.name} {split} ({file})")
    seen: dict[str, str] = {}
    for record, raw in rows:
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
