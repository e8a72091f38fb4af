"""Read a data file or a hub split into labelled rows: JSON lines, a JSON array, CSV, Parquet.

Each row comes with the label an error names it by: ``line N`` (JSON lines; CSV, the line the
record starts on), ``index N`` (a JSON array), ``row N`` (Parquet and hub datasets, counted as
`datasets` counts them). CSV is read with the standard library's reader, which knows on which
line a record starts and refuses a row with more or fewer fields than the header (pandas, under
`datasets`' CSV loader, would silently shift such a row's columns); Parquet files and hub
datasets are read through Hugging Face `datasets`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets_fmt.records import DataError

Row = tuple[str, dict]  # (record label for error messages, raw record)
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
BYTE_ORDER_MARK = b"\xef\xbb\xbf"


@dataclass
class Table:
    """The rows of one file or hub split; ``columns`` where the format fixes them for every row
    (CSV, Parquet, hub), so a missing column is named once, before any row is read."""

    name: str  # the file, or "<hub id> [<split>]"
    rows: Iterable[Row]
    columns: tuple[str, ...] | None = None


def _utf8_error(path: Path, data: bytes, err: UnicodeDecodeError) -> DataError:
    newline = b"\n"
    line_start = data.rfind(newline, 0, err.start) + 1
    return DataError(
        str(path),
        f"line {data.count(newline, 0, err.start) + 1}",
        None,
        f"invalid UTF-8 ({err.reason} at byte {err.start - line_start} of the line); re-encode the file as UTF-8",
    )


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
            obj = parse_json(line, path, f"line {lineno}")
            if not isinstance(obj, dict):
                raise DataError(
                    str(path), f"line {lineno}", None, f"expected a JSON object, got {type(obj).__name__}"
                )
            yield f"line {lineno}", obj


def parse_json(text: str, path: Path, where: str | None) -> object:
    """json.loads, a syntax error named by file and line (``where``, else the parser's line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            str(path),
            where or f"line {err.lineno}",
            None,
            f"malformed JSON: {err.msg} at character {err.pos + 1}",
        ) from None


def _read_json_array(path: Path) -> Iterator[Row]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            str(path), None, None, f"invalid UTF-8 at byte {err.start}; re-encode the file as UTF-8"
        ) from None
    data = parse_json(text, path, None)
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
        head = fh.read(4096).removeprefix(BYTE_ORDER_MARK).lstrip()
    return (
        _read_json_array(path) if head.startswith(b"[") or head.startswith(b'{"data"') else _read_jsonl(path)
    )


def _csv_rows(path: Path, reader, header: list[str]) -> Iterator[Row]:
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(str(path), f"line {start}", None, f"not valid CSV: {err}") from None
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            raise DataError(
                str(path),
                f"line {start}",
                None,
                f"{len(fields)} fields where the header has {len(header)}; quote fields that hold commas, quotes or line breaks",
            )
        yield f"line {start}", dict(zip(header, fields, strict=True))


def _read_csv(path: Path) -> Table:
    """A CSV file with a header row; every value is text (an empty cell is an empty value)."""
    data = path.read_bytes().removeprefix(BYTE_ORDER_MARK)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _utf8_error(path, data, err) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next((fields for fields in reader if fields), None)
    except csv.Error as err:
        raise DataError(str(path), "line 1", None, f"not valid CSV: {err}") from None
    if header is None:
        raise DataError(
            str(path), None, None, "empty: a CSV file starts with a header row naming its columns"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(str(path), "line 1", None, f"the header names column(s) {', '.join(repeated)} twice")
    return Table(str(path), _csv_rows(path, reader, header), tuple(header))


def _dataset_table(name: str, dataset) -> Table:
    return Table(
        name, ((f"row {i}", dict(row)) for i, row in enumerate(dataset)), tuple(dataset.column_names)
    )


def _first_line(err: BaseException) -> str:
    cause = err.__cause__ or err  # `datasets` wraps the reader's own error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _read_parquet(path: Path) -> Table:
    from datasets import load_dataset  # heavy; only for Parquet and the hub

    try:
        dataset = load_dataset("parquet", data_files=str(path), split="train")
    except Exception as err:  # pyarrow's and `datasets`' own errors, whatever their class
        raise DataError(str(path), None, None, f"cannot read as Parquet: {_first_line(err)}") from None
    return _dataset_table(str(path), dataset)


def read_file(path: Path) -> Table:
    """One local data file, by its suffix: .csv, .parquet, else JSON lines or a JSON array."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    return Table(str(path), read_records(path))


def read_hub(hub_id: str, split: str) -> Table:
    """One split of a Hugging Face hub dataset (or of its local cache when offline)."""
    from datasets import load_dataset  # heavy; only for Parquet and the hub

    name = f"{hub_id} [{split}]"
    try:
        dataset = load_dataset(hub_id, split=split)
    except Exception as err:  # offline, not found, no such split: each its own class
        raise DataError(
            name, None, None, f"cannot load from the Hugging Face hub: {_first_line(err)}"
        ) from None
    return _dataset_table(name, dataset)
