"""Published generations carry ids and generated texts only, never the dataset's text."""

import json

from eval.publish import main


def test_published_rows_hold_no_dialogue_or_reference(tmp_path):
    row = {
        "id": "test_0",
        "dialogue": "#Person1#: SECRET DIALOGUE",
        "references": ["SECRET REFERENCE"],
        "prompt_tokens": 10,
        "truncated_tokens": 0,
        "base": {"text": "a base summary", "output_tokens": 4, "stopped": True},
        "finetuned": {"text": "a fine-tuned summary", "output_tokens": 5, "stopped": True},
    }
    (tmp_path / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "public" / "run.jsonl"
    assert main([str(tmp_path), str(out)]) == 0
    text = out.read_text()
    assert json.loads(text) == {"id": "test_0", "base": "a base summary", "finetuned": "a fine-tuned summary"}
    assert "SECRET" not in text
    assert main([str(tmp_path / "missing"), str(out)]) == 2


def test_a_published_file_is_checked_against_the_users_own_dialogues(tmp_path):
    from datasets_fmt.sources import load_examples
    from eval.publish import check_published, dialogues_by_id
    from tests.conftest import DEMO_DATA

    ids = [ex.id for ex in load_examples("dialogsum", "test", str(DEMO_DATA)).examples[:4]]
    rows = [
        {"id": i, "base": "Zorblax paid 9,999 dollars.", "finetuned": "#Person1# talks to #Person2#."}
        for i in ids
    ]
    published = tmp_path / "run.jsonl"
    published.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dialogues = dialogues_by_id("dialogsum", "test", str(DEMO_DATA))
    share = check_published(published, dialogues)["faithfulness"]["share"]
    assert share["base"]["mean"] == 1.0 and share["finetuned"]["mean"] == 0.0
