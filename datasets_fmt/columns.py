"""Your own data without code: ``data.column_map`` says which of your columns holds each field.

It reads as torchtune's ``column_map`` does (our field -> your column); the fields are
DialogSum's (``dialogue``, ``summary``) and Alpaca's (``instruction``, ``input``, ``output``,
which Axolotl's ``field_instruction``/``field_input``/``field_output`` name). Two kinds, told
apart by the fields named:

- summarization: ``dialogue`` and ``summary`` (a list of columns for several references, the
  first one trained on);
- instruction (Dolly-style): ``instruction`` and ``output``, ``input`` optional.

``id`` is optional in both: without it a record is known by its line or row.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from datasets_fmt.records import DataError, Example, record_id, text_field

SUMMARY_FIELDS = ("dialogue", "summary")
INSTRUCTION_FIELDS = ("instruction", "input", "output")
FIELDS = ("id", *SUMMARY_FIELDS, *INSTRUCTION_FIELDS)
EXAMPLE = (
    "{dialogue: <column>, summary: <column>} or {instruction: <column>, input: <column>, output: <column>}"
)

Parse = Callable[[str, str, dict, str], Example]  # (file, record, raw, split)


def mapped_columns(column_map: dict) -> dict[str, list[str]]:
    """Field -> the columns it reads (``summary`` may name several)."""
    return {field: column if isinstance(column, list) else [column] for field, column in column_map.items()}


def column_map_problem(column_map) -> str | None:
    """What a recipe's ``data.column_map`` gets wrong, on one line (None: nothing)."""
    if not isinstance(column_map, dict) or not column_map:
        return f"data.column_map must map each field to your column: {EXAMPLE}"
    unknown = [str(k) for k in column_map if k not in FIELDS]
    if unknown:
        named = ", ".join(
            k
            + (f" (did you mean '{hint[0]}'?)" if (hint := difflib.get_close_matches(k, FIELDS, n=1)) else "")
            for k in unknown
        )
        return f"data.column_map: unknown field(s) {named}; the fields are {', '.join(FIELDS)}"
    summary = [k for k in SUMMARY_FIELDS if k in column_map]
    instruction = [k for k in INSTRUCTION_FIELDS if k in column_map]
    if summary and instruction:
        return (
            f"data.column_map mixes summarization fields ({', '.join(summary)}) with instruction fields "
            f"({', '.join(instruction)}): map one kind, {EXAMPLE}"
        )
    required = ("dialogue", "summary") if summary else ("instruction", "output")
    missing = [k for k in required if k not in column_map]
    if missing:
        return f"data.column_map names no column for {', '.join(missing)}: {EXAMPLE}"
    for field, columns in mapped_columns(column_map).items():
        several = field == "summary" and isinstance(column_map[field], list)
        if (
            not columns
            or not all(isinstance(c, str) and c for c in columns)
            or (len(columns) > 1 and not several)
        ):
            return f"data.column_map.{field}: {column_map[field]!r} is not a column name" + (
                " (or, for summary, a list of them)" if field == "summary" else ""
            )
    return None


def check_columns(table: str, columns: tuple[str, ...], column_map: dict) -> None:
    """Every mapped column exists in a file whose columns are fixed (CSV, Parquet, hub)."""
    for field, names in mapped_columns(column_map).items():
        for name in names:
            if name not in columns:
                raise DataError(
                    table,
                    None,
                    name,
                    f"no such column (columns present: {', '.join(columns)}); data.column_map.{field} names it",
                )


def column_map_parser(column_map: dict) -> Parse:
    """The row parser of a user's data: an Example from the mapped columns."""
    columns = mapped_columns(column_map)
    id_column = column_map.get("id")

    def field(file: str, record: str, raw: dict, name: str, column: str, required: bool = True) -> str:
        return text_field(file, record, raw, column, required, named_by=f"data.column_map.{name}")

    def parse(file: str, record: str, raw: dict, split: str) -> Example:
        ident = record_id(raw, (id_column,), record)
        if "dialogue" in columns:
            dialogue = field(file, record, raw, "dialogue", columns["dialogue"][0])
            refs = [field(file, record, raw, "summary", c) for c in columns["summary"]]
            return Example(id=ident, source=dialogue, target=refs[0], references=tuple(refs))
        return Example(
            id=ident,
            instruction=field(file, record, raw, "instruction", columns["instruction"][0]),
            source=field(file, record, raw, "input", columns["input"][0], required=False)
            if "input" in columns
            else "",
            target=field(file, record, raw, "output", columns["output"][0]),
        )

    return parse
