"""evaluation.engine_args: more vLLM engine arguments from the recipe or OVERRIDES, given to
every engine the evaluation starts and to `make serve`, after everything the project
chooses; a name vLLM does not take is refused before a model loads."""

import json

import pytest
import yaml

from eval.backends import EngineSettings
from eval.backends.vllm import CPU_ENGINE_ARGS, check_engine_args, engine_kwargs
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
