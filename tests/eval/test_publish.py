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
