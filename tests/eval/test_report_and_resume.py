import json
from html.parser import HTMLParser

import pytest

from datasets_fmt.records import Example
from eval.backends import Generation
from eval.metrics import get_metrics, summarize
from eval.pipeline import System, run_system
from eval.predictions import PartialPredictions
from eval.report import write_report


def fake_rows(n=12):
    rows = []
    for i in range(n):
        refs = [
            f"Person{i} books a table for {i} people.",
            f"A table for {i} is booked.",
            f"Booking for {i}.",
        ]
        rows.append(
            {
                "id": f"d{i}",
                "dialogue": f"#Person1#: table for {i}?\n#Person2#: yes.",
                "references": refs,
                "prompt_tokens": 20,
                "truncated_tokens": 0,
                "base": {
                    "text": "I am a helpful assistant and this is a long answer " * (i % 3 + 1),
                    "output_tokens": 40,
                    "stopped": i % 2 == 0,
                },
                "finetuned": {
                    "text": refs[i % 3] if i % 4 else "Something else.",
                    "output_tokens": 10,
                    "stopped": True,
                },
            }
        )
    return rows


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_renders_and_matches_metrics(tmp_path):
    rows = fake_rows()
    result = summarize(
        get_metrics(["rouge"]),
        {s: [r[s]["text"] for r in rows] for s in ("base", "finetuned")},
        [r["references"] for r in rows],
        n_resamples=200,
    )
    run = {"recipe": "unit", "base_model": "tiny", "adapter": "lora", "data": {}, "evaluation": {}}
    generation = {
        "throughput": {"base": {"items": 12, "prompts_per_s": 1.0, "output_tokens_per_s": 9.0}},
        "engine_start_seconds": {"base": 1.0},
        "backend": "vllm",
        "example_prompt": "Summarize the following dialogue.",
    }
    paths, returned = write_report(
        tmp_path, tmp_path, run, {"lora_r": 8}, rows, result, generation, "unit data"
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert returned == metrics
    html = (tmp_path / "report.html").read_text()
    parser = Collector()
    parser.feed(html)
    assert len(parser.images) >= 2 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    r1 = metrics["scores"]["best"]["rouge1"]
    for text in (html, (tmp_path / "report.md").read_text()):
        assert f"from {r1['base']['mean']:.2f} to {r1['finetuned']['mean']:.2f}" in text
        assert f"{r1['difference']['diff']:+.2f}" in text
    assert metrics["lengths"]["base"]["not_stopped_share"] == 0.5
    assert {p.name for p in paths} >= {
        "metrics.json",
        "report.md",
        "report.html",
        "scores.png",
        "lengths.png",
    }


class FlakyGenerator:
    """Generates echo outputs; crashes on a chosen call, like a killed evaluation."""

    def __init__(self, crash_on_call=None):
        self.calls, self.prompts_seen, self.crash_on_call = 0, 0, crash_on_call

    def generate(self, prompts, max_new_tokens, stop_ids, adapter=None, num_beams=1, length_penalty=None):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise KeyboardInterrupt("killed")
        self.prompts_seen += len(prompts)
        return [Generation(f"summary of {len(p)} tokens", 3, True) for p in prompts]


SYSTEM = System("finetuned", "model", None)


class P:
    def __init__(self, n):
        self.input_ids = list(range(n))


def test_interrupted_evaluation_resumes_without_regenerating(tmp_path):
    examples = [Example(f"e{i}", "d", "s") for i in range(10)]
    prompts = [P(i + 1) for i in range(10)]
    partial_file = tmp_path / "finetuned.partial.jsonl"
    first = FlakyGenerator(crash_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run_system(SYSTEM, PartialPredictions(partial_file), first, None, prompts, examples, 8, [2], 4)
    assert len(PartialPredictions(tmp_path / "finetuned.partial.jsonl").done) == 4
    # a crash mid-line leaves a broken last line: it is ignored and regenerated
    with (tmp_path / "finetuned.partial.jsonl").open("a") as fh:
        fh.write('{"id": "e4", "te')
    second = FlakyGenerator()
    stats = run_system(SYSTEM, PartialPredictions(partial_file), second, None, prompts, examples, 8, [2], 4)
    assert second.prompts_seen == 6 and stats["items"] == 6
    done = PartialPredictions(tmp_path / "finetuned.partial.jsonl").done
    assert sorted(done) == sorted(ex.id for ex in examples)


def test_generation_shows_items_done_and_rate(tmp_path, capsys):
    examples = [Example(f"e{i}", "d", "s") for i in range(10)]
    prompts = [P(i + 1) for i in range(10)]
    run_system(
        SYSTEM, PartialPredictions(tmp_path / "p.jsonl"), FlakyGenerator(), None, prompts, examples, 8, [2], 4
    )
    err = capsys.readouterr().err
    assert "finetuned: generating" in err and "10/10" in err and "item/s" in err
