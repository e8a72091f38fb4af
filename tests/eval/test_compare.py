"""`make compare`: scores of several runs in one table; two evaluations text by text."""

import json

from eval.compare import main, text_changes


def evaluation(folder, texts: dict[str, list[str]], rouge1: dict[str, float]):
    folder.mkdir(parents=True)
    rows = [
        {"id": f"d{i}", **{s: {"text": t[i]} for s, t in texts.items()}} for i in range(len(texts["base"]))
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = {agg: {"rouge1": {s: {"mean": v} for s, v in rouge1.items()}} for agg in ("mean", "best")}
    metrics = {"n": len(rows), "keys": ["rouge1"], "labels": {"rouge1": "ROUGE-1"}, "scores": scores}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_two_evaluations_are_compared_text_by_text(tmp_path, capsys):
    a = evaluation(
        tmp_path / "a",
        {"base": ["x", "y", "z", "w"], "finetuned": ["p", "q", "r", "s"]},
        {"base": 20.0, "finetuned": 40.0},
    )
    b = evaluation(
        tmp_path / "b",
        {"base": ["x", "Y", "z", "w"], "finetuned": ["p", "q", "r", "s"]},
        {"base": 20.5, "finetuned": 40.0},
    )
    result = text_changes(a, b)
    assert result["items"] == 4
    assert result["base"]["changed"] == 1 and result["base"]["share"] == 0.25
    assert result["base"]["rouge1_moved"] == {"mean": 0.5, "best": 0.5}
    assert result["finetuned"]["changed"] == 0
    assert main(["--texts", str(a), str(b)]) == 0
    assert "base: 1 of 4 texts differ (25.0%)" in capsys.readouterr().out
    assert main([str(a), str(b)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| run | model | references | n | ROUGE-1 |" and len(table) == 2 + 2 * 4
