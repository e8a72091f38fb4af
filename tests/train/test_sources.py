import json

import pytest

from datasets_fmt.records import Example
from datasets_fmt.sources import _merge_repeated_dialogues, load_examples
from tests.conftest import DEMO_DATA


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_demo_corpus_is_big_enough_and_has_three_references():
    train = load_examples("dialogsum", "train", DEMO_DATA)
    test = load_examples("dialogsum", "test", DEMO_DATA)
    assert len(train.examples) >= 200 and len(test.examples) >= 50
    assert all(len(ex.references) == 3 for ex in test.examples)
    assert all(ex.source.startswith("#Person1#:") for ex in train.examples)
    assert not {ex.source for ex in train.examples} & {ex.source for ex in test.examples}


def test_empty_records_are_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(
            [
                {"id": "a", "dialogue": "Anna: hi\r\nBen: hello", "summary": "They greet."},
                {"id": "13828807", "dialogue": "", "summary": "Nothing."},
            ]
        )
    )
    loaded = load_examples("samsum", "train", path)
    assert [ex.id for ex in loaded.examples] == ["a"]
    assert loaded.examples[0].source == "Anna: hi\nBen: hello"  # \r\n turns normalized
    assert loaded.skipped == {"empty dialogue": 1}
    assert "index 1 (id 13828807)" in loaded.skipped_note()
    assert "skipped 1 record" in caplog.text


def test_dolly_keeps_per_record_instruction(tmp_path):
    write_jsonl(
        tmp_path / "databricks-dolly-15k.jsonl",
        [
            {"instruction": "Name a colour.", "context": "", "response": "Blue.", "category": "open_qa"},
            {
                "instruction": "Summarize.",
                "context": "A long text.",
                "response": "Short.",
                "category": "summarization",
            },
        ],
    )
    loaded = load_examples("dolly", "train", tmp_path)
    assert [ex.instruction for ex in loaded.examples] == ["Name a colour.", "Summarize."]
    assert loaded.examples[0].source == "" and loaded.examples[1].target == "Short."


def test_hub_style_repeated_test_dialogues_fold_into_references():
    rows = [Example(f"t{i}", "same dialogue", f"ref {i}") for i in range(3)] + [Example("u", "other", "r")]
    merged = _merge_repeated_dialogues(rows)
    assert [ex.references for ex in merged] == [("ref 0", "ref 1", "ref 2"), ("r",)]


def test_missing_split_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA_DIR"):
        load_examples("samsum", "test", tmp_path)


def test_real_dialogsum_and_samsum(shared_data):
    assert len(load_examples("dialogsum", "train", shared_data).examples) == 12460
    test = load_examples("dialogsum", "test", shared_data)
    assert len(test.examples) == 500 and all(len(ex.references) == 3 for ex in test.examples)
    samsum = load_examples("samsum", "train", shared_data)
    assert samsum.skipped["empty dialogue"] == 1 and "13828807" in samsum.skipped_note()
    assert len(samsum.examples) == 14731
    assert all("\r" not in ex.source for ex in samsum.examples)
