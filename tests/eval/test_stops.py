"""Generation ends where the prompt format says a summary ends: a model that always wants to
write the format's end-of-turn token (Llama-3's <|eot_id|>, ChatML's <|im_end|>) stops at
once in both backends, although its generation config names another EOS; a model that never
writes it runs to max_new_tokens and is reported as not stopped."""

import pytest
from transformers import AutoTokenizer

from datasets_fmt.prompts import get_format
from datasets_fmt.records import Example
from eval.backends import EngineSettings, get_backend, max_new_tokens_for, stop_token_ids
from tests.conftest import token_forcing_model

MAX_NEW = 7
EXAMPLE = Example("x", "#Person1#: Hi, is the report done?\n#Person2#: Yes, I sent it.", "They talk.")
CASES = {  # tokenizer fixture: (end-of-turn token the format stops on, a token that is no stop)
    "llama3_tokenizer_dir": ("<|eot_id|>", "The"),
    "smollm2_dir": ("<|im_end|>", "The"),
}


def forcing(request, tmp_path_factory, tokenizer_fixture: str, token: str) -> tuple:
    tokenizer_dir = request.getfixturevalue(tokenizer_fixture)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    fmt = get_format("chat", tokenizer)
    forced = tokenizer.convert_tokens_to_ids(token)
    other_eos = tokenizer.convert_tokens_to_ids(
        "<|endoftext|>" if "im_end" in fmt.end_text else "<|end_of_text|>"
    )
    model = token_forcing_model(tmp_path_factory, tokenizer_dir, forced, [other_eos])
    return model, fmt, forced


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["hf", "vllm"])
@pytest.mark.parametrize("tokenizer_fixture", sorted(CASES))
def test_generation_stops_on_the_formats_end_token(backend, tokenizer_fixture, request, tmp_path_factory):
    if backend == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
    end_token, plain_token = CASES[tokenizer_fixture]
    prompt = None
    results = {}
    for token in (end_token, plain_token):
        model, fmt, forced = forcing(request, tmp_path_factory, tokenizer_fixture, token)
        assert fmt.stop_token_ids == [AutoTokenizer.from_pretrained(model).convert_tokens_to_ids(end_token)]
        stop = stop_token_ids(str(model), fmt.stop_token_ids)
        prompt = fmt.encode_prompt(EXAMPLE).input_ids
        engine = get_backend(backend)(str(model), EngineSettings(max_model_len=512))
        results[token] = engine.generate([prompt, prompt], MAX_NEW, stop)
        engine.close()
    for out in results[end_token]:  # stopped at once on the format's end token: nothing written
        assert out.stopped and out.text == "" and out.output_tokens == 1
    for out in results[plain_token]:  # never stops: cut at max_new_tokens, reported as such
        assert not out.stopped and out.output_tokens == MAX_NEW and out.text == "The" * MAX_NEW


def test_max_new_tokens_leaves_room_for_the_longest_reference_plus_half():
    assert max_new_tokens_for([10, 40, 21]) == 60
    assert max_new_tokens_for([41]) == 62  # rounded up, never cut a complete summary
    assert max_new_tokens_for([3]) == 16  # a floor for very short references
    assert max_new_tokens_for([1000]) == 512  # a cap for runaway references
