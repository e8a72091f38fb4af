"""The recipe's ``evaluation:`` block, checked by the package that owns its names (backends,
adapter modes, metrics). ``make check`` runs this before anything heavy starts: the training
entry point hands it to the training checks (``training.checks.BlockCheck``), so training
never imports the evaluation side."""

from __future__ import annotations

from collections.abc import Callable

from eval.backends import ADAPTER_MODES, BACKENDS
from eval.metrics import METRICS, SOURCE_CHECKS
from training.checks import BlockProblem, between, require_choice, whole

# key: (test, what the value must be); None means "not set" everywhere here
RANGES: dict[str, tuple[Callable[[object], bool], str]] = {
    "limit": (whole(1), "a whole number of items >= 1 (or null: the whole split)"),
    "max_new_tokens": (whole(1), "a whole number >= 1 (or null: from the references)"),
    "num_beams": (whole(1), "a whole number >= 1 (1: greedy)"),
    "length_penalty": (
        between(-10, 10, high_open=False),
        "a number from -10 to 10 (1.0: no preference; below 1 favours shorter summaries)",
    ),
    "batch_size": (whole(1), "a whole number >= 1"),
}


def check_evaluation_block(block: dict) -> None:
    """Sizes in range and every name one this package has; a BlockProblem names the key."""
    for key, (ok, what) in RANGES.items():
        value = block[key]
        if value is not None and not ok(value):
            raise BlockProblem(
                f"evaluation.{key}", f"evaluation.{key}: {value!r} cannot be used: it must be {what}"
            )
    require_choice("evaluation.backend", block["backend"], BACKENDS)
    require_choice("evaluation.adapter_mode", block["adapter_mode"], ADAPTER_MODES)
    metrics = block["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise BlockProblem("evaluation", "evaluation.metrics must be a list, e.g. [rouge]")
    for name in metrics:
        require_choice("evaluation.metrics", name, METRICS)
    checks = block["source_checks"]
    if not isinstance(checks, list):
        raise BlockProblem(
            "evaluation", "evaluation.source_checks must be a list, e.g. [faithfulness] (or [] for none)"
        )
    for name in checks:
        require_choice("evaluation.source_checks", name, SOURCE_CHECKS)
    engine_args = block["engine_args"]
    if not isinstance(engine_args, dict) or not all(isinstance(k, str) for k in engine_args):
        raise BlockProblem(
            "evaluation.engine_args",
            f"evaluation.engine_args: {engine_args!r} cannot be used: it must be a mapping of vLLM engine "
            "arguments, e.g. {enforce_eager: true} ({} for none)",
        )
