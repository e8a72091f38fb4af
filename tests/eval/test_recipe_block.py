"""The recipe's evaluation: block is checked by the evaluation side, which owns its names: every
recipe's block passes, and a bad value is refused naming its key."""

import pytest

from eval.recipe_block import check_evaluation_block
from training.checks import BlockProblem
from training.recipe import recipe_names, resolve


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_has_a_usable_evaluation_block(name):
    check_evaluation_block(resolve(name).project["evaluation"])


@pytest.mark.parametrize(
    ("override", "key", "problem"),
    [
        ("evaluation.backend=tgi", "evaluation.backend", "evaluation.backend: 'tgi' is not one of vllm, hf"),
        ("evaluation.adapter_mode=merge", "evaluation.adapter_mode", "(did you mean 'merged'?)"),
        ("evaluation.metrics=[rouge,bleu]", "evaluation.metrics", "'bleu' is not one of rouge"),
        ("evaluation.metrics=rouge", "evaluation", "evaluation.metrics must be a list"),
        (
            "evaluation.source_checks=[facts]",
            "evaluation.source_checks",
            "'facts' is not one of faithfulness",
        ),
        ("evaluation.source_checks=faithfulness", "evaluation", "evaluation.source_checks must be a list"),
        ("evaluation.batch_size=0", "evaluation.batch_size", "it must be a whole number >= 1"),
    ],
)
def test_a_bad_value_names_its_key(override, key, problem):
    with pytest.raises(BlockProblem) as err:
        check_evaluation_block(resolve("smollm2-dialogsum", [override]).project["evaluation"])
    assert err.value.key == key and problem in str(err.value)


def test_evaluation_overrides_take_evaluation_keys_only_and_are_checked():
    from eval.pipeline import EvaluationError, evaluation_overrides

    assert evaluation_overrides(("evaluation.max_new_tokens=64", "evaluation.num_beams=2")) == {
        "max_new_tokens": 64,
        "num_beams": 2,
    }
    with pytest.raises(EvaluationError, match="'learning_rate=1e-4' is not an evaluation.KEY=VALUE"):
        evaluation_overrides(("learning_rate=1e-4",))
    with pytest.raises(EvaluationError, match="evaluation.num_beams: 0 cannot be used"):
        evaluation_overrides(("evaluation.num_beams=0",))
    assert evaluation_overrides(("evaluation.length_penalty=0.6",)) == {"length_penalty": 0.6}
    with pytest.raises(EvaluationError, match="evaluation.length_penalty: True cannot be used"):
        evaluation_overrides(("evaluation.length_penalty=true",))
