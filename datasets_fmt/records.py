"""The normalized record every corpus is turned into, the error that names bad input, and the
field readers every row parser shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Example:
    """One training or evaluation item, whatever corpus it came from.

    ``source`` is the text the model reads (a dialogue, or Dolly's context), ``target`` the
    text it learns to write. ``references`` holds every human reference (DialogSum's test
    split has three); ``target`` is the first. ``instruction`` is per-record only for
    instruction corpora (Dolly); summarization formats use their own fixed instruction.
    """

    id: str
    source: str
    target: str
    references: tuple[str, ...] = field(default=())
    instruction: str | None = None

    def __post_init__(self) -> None:
        if not self.references:
            object.__setattr__(self, "references", (self.target,))

    def to_json(self) -> dict:
        row = asdict(self)
        row["references"] = list(self.references)
        return row

    @classmethod
    def from_json(cls, row: dict) -> Example:
        return cls(
            id=str(row["id"]),
            source=row["source"],
            target=row["target"],
            references=tuple(row.get("references") or ()),
            instruction=row.get("instruction"),
        )


class DataError(ValueError):
    """Bad input data: says which file, which record, which field, and how to fix it."""

    def __init__(self, file: str, record: str | int | None, field: str | None, problem: str):
        self.file, self.record, self.field, self.problem = file, record, field, problem
        where = file
        if record is not None:  # a label such as "line 12", "index 3 (id 13828807)", "row 7"
            where += f", {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class Skip(Exception):
    """A well-formed record that cannot be trained or scored on (counted, not fatal)."""


def text_field(file: str, record: str, raw: dict, key: str, required: bool = True, named_by: str = "") -> str:
    """``raw[key]`` as clean text. A missing required key stops with a DataError; an empty value
    (``""``, or null: a blank cell) skips the record when ``required``. ``named_by`` says which recipe
    key names the field (for a user's column map)."""
    if key not in raw:
        if not required:
            return ""
        present = ", ".join(sorted(map(str, raw))) or "none"
        hint = f"; {named_by} names it" if named_by else ""
        raise DataError(file, record, key, f"missing (fields present: {present}){hint}")
    value = raw[key]
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise DataError(file, record, key, f"expected a string, got {type(value).__name__}")
    value = value.replace("\r\n", "\n").strip()
    if required and not value:
        raise Skip(f"empty {key}")
    return value


def record_id(raw: dict, keys: Iterable[str | None], fallback: str) -> str:
    """The first non-empty id field, else the record's label (``line 3``)."""
    for key in keys:
        if key and raw.get(key) not in (None, ""):
            return str(raw[key])
    return fallback
