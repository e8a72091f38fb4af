"""Your own data without code (`corpus: custom` + `column_map`) in every file format, and
splits kept apart: one file is the train split only, unless `split_fractions` cuts it (seeded,
recorded in run.yml, each prompt on one side)."""

import csv
import json

import pytest
import yaml

from datasets_fmt.records import DataError, Example
from datasets_fmt.sources import load_data, load_examples
from datasets_fmt.spec import DataSpec, data_block_problem
from datasets_fmt.splits import check_same_split, cut, digest
from tests.conftest import DEMO_DATA, REPO
from training import runner as train
from training.recipe import project_defaults, resolve

COLUMNS = {"id": "ref", "dialogue": "chat", "summary": "recap"}
FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def rows(n=20):
    return [
        {"ref": f"r{i}", "chat": f"A: question {i}?\nB: answer {i}.", "recap": f"They talk {i}."}
        for i in range(n)
    ]


def write(path, records):
    """``records`` as the file format ``path``'s suffix names."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def spec(location, column_map=COLUMNS, fractions=None, seed=0) -> DataSpec:
    return DataSpec("custom", str(location), "train", column_map, fractions, seed)


def texts(loaded):
    return [(ex.id, ex.source, ex.target) for ex in loaded.examples]


def test_every_file_format_gives_the_same_records(tmp_path):
    expected = [(r["ref"], r["chat"], r["recap"]) for r in rows()]
    for suffix in (".jsonl", ".json", ".csv", ".parquet"):
        path = write(tmp_path / f"data{suffix}", rows())
        assert texts(load_data(spec(path), "train")) == expected, suffix


def test_a_byte_order_mark_starts_a_csv_as_spreadsheets_write_it(tmp_path):
    path = write(tmp_path / "d.csv", rows(2))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [ex.id for ex in load_data(spec(path), "train").examples] == ["r0", "r1"]


def test_dolly_gets_a_test_split_by_a_cut(tmp_path):
    dolly = [{"instruction": f"Question {i}?", "context": "", "response": f"{i}."} for i in range(10)]
    write(tmp_path / "databricks-dolly-15k.jsonl", dolly)
    cut_dolly = DataSpec("dolly", str(tmp_path), "train", None, {"train": 0.8, "test": 0.2}, 0)
    test = load_data(cut_dolly, "test").examples
    assert len(test) == 2 and not {ex.id for ex in test} & {
        ex.id for ex in load_data(cut_dolly, "train").examples
    }


def test_a_folder_holds_one_file_per_split(tmp_path):
    write(tmp_path / "train.csv", rows(6))
    write(tmp_path / "test.parquet", rows(3))
    assert len(load_data(spec(tmp_path), "test").examples) == 3
    with pytest.raises(FileNotFoundError, match=r"no custom validation file under .*validation\.jsonl \(or"):
        load_data(spec(tmp_path), "validation")


def test_instruction_data_and_several_references(tmp_path):
    dolly_like = [
        {"q": "Name a colour.", "ctx": "", "a": "Blue."},
        {"q": "Summarize.", "ctx": "A long text.", "a": "Short."},
    ]
    loaded = load_data(
        spec(write(tmp_path / "d.csv", dolly_like), {"instruction": "q", "input": "ctx", "output": "a"}),
        "train",
    )
    assert [(ex.instruction, ex.source, ex.target) for ex in loaded.examples] == [
        ("Name a colour.", "", "Blue."),
        ("Summarize.", "A long text.", "Short."),
    ]
    assert loaded.examples[0].id == "line 2"  # no id column: the record's label
    refs = [{"chat": "A: hi", "s1": "One.", "s2": "Two."}]
    loaded = load_data(
        spec(write(tmp_path / "r.jsonl", refs), {"dialogue": "chat", "summary": ["s1", "s2"]}), "train"
    )
    assert loaded.examples[0].references == ("One.", "Two.") and loaded.examples[0].target == "One."


def test_a_missing_column_is_named_with_the_columns_present(tmp_path):
    path = write(tmp_path / "d.parquet", [{"ref": "r1", "chat": "A: hi", "notes": "Hi."}])
    with pytest.raises(DataError) as err:
        load_data(spec(path), "train")
    assert str(err.value) == (
        f"{path}, field 'recap': no such column (columns present: ref, chat, notes); data.column_map.summary names it"
    )


def test_empty_values_are_skipped_by_record_and_wrong_types_refused(tmp_path, caplog):
    records = rows(3)
    records[1]["recap"] = ""
    loaded = load_data(spec(write(tmp_path / "d.csv", records)), "train")
    assert [ex.id for ex in loaded.examples] == ["r0", "r2"]
    assert "1 with empty recap (first at line 4)" in caplog.text  # line 4: the header, then 2 lines a record
    typed = [{"ref": "r0", "chat": "A: hi", "recap": 7}]
    with pytest.raises(DataError, match=r"d\.parquet, row 0, field 'recap': expected a string, got int"):
        load_data(spec(write(tmp_path / "d.parquet", typed)), "train")


def test_invalid_utf8_in_a_csv_names_its_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"ref,chat,recap\nr0,A: hi,Hi.\nr1,caf\xe9,Bad.\n")
    with pytest.raises(DataError) as err:
        load_data(spec(path), "train")
    assert str(err.value) == (
        f"{path}, line 3: invalid UTF-8 (invalid continuation byte at byte 6 of the line); re-encode the file as UTF-8"
    )


def test_the_cut_is_seeded_complete_and_keeps_each_side_apart(tmp_path):
    records = rows(40)
    for i in range(30, 40):  # ten dialogues written twice: each pair on one side
        records[i]["chat"] = records[i - 30]["chat"]
    path = write(tmp_path / "d.csv", records)
    sides = {name: load_data(spec(path, fractions=FRACTIONS), name) for name in FRACTIONS}
    ids = {name: [ex.id for ex in loaded.examples] for name, loaded in sides.items()}
    assert sorted(sum(ids.values(), []), key=lambda i: int(i[1:])) == [r["ref"] for r in records]
    assert all(abs(len(ids[name]) - 40 * share) <= 1 for name, share in FRACTIONS.items())  # pairs move whole
    side_of = {i: name for name, names in ids.items() for i in names}
    assert all(side_of[f"r{i}"] == side_of[f"r{i + 30}"] for i in range(10))
    again = [ex.id for ex in load_data(spec(path, fractions=FRACTIONS), "test").examples]
    reordered = dict(reversed(FRACTIONS.items()))  # the order the shares are written in changes nothing
    written_otherwise = [ex.id for ex in load_data(spec(path, fractions=reordered), "test").examples]
    other_seed = [ex.id for ex in load_data(spec(path, fractions=FRACTIONS, seed=1), "test").examples]
    assert again == written_otherwise == ids["test"] and other_seed != ids["test"]
    record = sides["test"].split_record
    assert record["seed"] == 0 and record["fractions"] == FRACTIONS
    assert record["records"] == {name: len(i) for name, i in ids.items()}
    assert record["sha256"]["train"] == digest(sides["train"].examples)


def test_cut_counts_follow_the_shares():
    examples = load_examples("dialogsum", "train", DEMO_DATA).examples[:50]
    sides = cut(examples, {"train": 0.7, "test": 0.3}, seed=3)
    assert [len(s) for s in sides.values()] == [35, 15]
    assert not {ex.id for ex in sides["train"]} & {ex.id for ex in sides["test"]}


def test_one_file_is_the_train_split_and_nothing_else(tmp_path):
    path = write(tmp_path / "d.jsonl", rows())
    assert len(load_data(spec(path), "train").examples) == 20
    for split in ("validation", "test"):
        with pytest.raises(DataError, match=f"the '{split}' split cannot come from it too"):
            load_data(spec(path), split)
    with pytest.raises(DataError, match="cannot come from it too"):
        load_examples("dialogsum", "test", REPO / "tests" / "bad_inputs" / "one_file_for_every_split.jsonl")


def test_a_changed_file_no_longer_matches_the_recorded_cut(tmp_path):
    path = write(tmp_path / "d.csv", rows())
    recorded = load_data(spec(path, fractions=FRACTIONS), "test").split_record
    edited = rows()
    edited[5]["recap"] = "Something else."
    write(path, edited)
    now = load_data(spec(path, fractions=FRACTIONS), "test").split_record
    check_same_split(recorded, recorded)
    with pytest.raises(
        DataError, match=r"no longer gives the split\(s\) training recorded in run.yml \(\w+ differ\)"
    ):
        check_same_split(recorded, now)


def test_the_data_block_check_says_what_to_write():
    block = {**project_defaults()["data"], "corpus": "custom", "column_map": COLUMNS}
    assert data_block_problem(block, "test") == (
        "data.corpus",
        "data.corpus: custom needs data.location (or DATA_DIR): a .jsonl, .json, .csv or .parquet file, "
        "a folder of <split> files, or a hub dataset id",
    )
    assert data_block_problem({**block, "location": "org/chats"}, "test") is None
    cut_block = {**block, "location": "x.csv", "split_fractions": FRACTIONS, "split_seed": -1}
    assert data_block_problem(cut_block, "test")[0] == "data.split_seed"


def test_a_hub_dataset_id_stays_one_and_a_local_path_is_resolved():
    assert resolve("smollm2-csv-example", ["data.location=my-org/support-chats"]).project["data"][
        "location"
    ] == ("my-org/support-chats")
    local = resolve("smollm2-csv-example").project["data"]["location"]
    assert local.startswith("/") and local.endswith("data/csv-example/chats.csv")


def test_check_records_the_cut_beside_the_data_it_wrote(tmp_path, tiny_llama):
    run_dir = tmp_path / "run"
    args = ["smollm2-csv-example", f"base_model={tiny_llama}", "--run-dir", str(run_dir), "--check"]
    assert train.main(args) == 0
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    assert run["data_split"]["records"] == {"train": 32, "validation": 4, "test": 4}
    assert run["data_split"]["seed"] == 0 and run["data_split"]["fractions"] == FRACTIONS
    for role in ("train", "validation"):
        lines = (run_dir / "data" / f"{role}.jsonl").read_text().splitlines()
        examples = [Example.from_json(json.loads(line)) for line in lines]
        assert digest(examples) == run["data_split"]["sha256"][role]
