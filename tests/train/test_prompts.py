import pytest
from transformers import AutoTokenizer

from datasets_fmt.prompts import FORMATS, IGNORE_INDEX, TooLong, get_format
from datasets_fmt.records import Example

DIALOGUE = "#Person1#: Did you book the table?\n#Person2#: Yes, for eight at seven o'clock."
SUMMARY = "#Person2# booked a table for eight people at seven."
EXAMPLE = Example("t1", DIALOGUE, SUMMARY)


@pytest.fixture(scope="module")
def llama3(llama3_tokenizer_dir):
    return AutoTokenizer.from_pretrained(llama3_tokenizer_dir)


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


def completion(tokenizer, enc):
    return [t for t, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE_INDEX]


def test_llama3_prompt_is_the_official_instruct_format(llama3):
    fmt = get_format("chat", llama3)
    enc = fmt.encode_train(EXAMPLE, 1024)
    golden_prompt = (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"Summarize the following dialogue.\n\n{DIALOGUE}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert fmt.prompt_text(EXAMPLE) == golden_prompt
    assert llama3.decode(enc.input_ids[: enc.prompt_len]) == golden_prompt
    # the loss starts exactly at the summary and ends with <|eot_id|> (128009), not <|end_of_text|>
    assert llama3.decode(completion(llama3, enc)) == SUMMARY + "<|eot_id|>"
    assert enc.labels[enc.prompt_len - 1] == IGNORE_INDEX and enc.labels[enc.prompt_len] != IGNORE_INDEX
    assert enc.input_ids[0] == 128000 and enc.labels[-1] == 128009
    assert enc.input_ids.count(128000) == 1  # BOS once: the template writes it, we add none


def test_smollm2_chat_ends_with_im_end(smollm2):
    fmt = get_format("chat", smollm2)
    enc = fmt.encode_train(EXAMPLE, 1024)
    assert smollm2.decode(completion(smollm2, enc)) == SUMMARY + "<|im_end|>"
    assert fmt.stop_token_ids == [smollm2.convert_tokens_to_ids("<|im_end|>")]
    assert smollm2.pad_token_id != smollm2.eos_token_id


@pytest.mark.parametrize("name", ["chat", "plain", "alpaca"])
@pytest.mark.parametrize("max_len", [1024, 60])
def test_training_prompt_equals_evaluation_prompt(llama3, name, max_len):
    fmt = get_format(name, llama3)
    enc = fmt.encode_train(EXAMPLE, max_len)
    budget = max_len - len(fmt.completion_ids(EXAMPLE))
    assert enc.input_ids[: enc.prompt_len] == fmt.encode_prompt(EXAMPLE, budget).input_ids
    assert len(enc.input_ids) <= max_len


def test_long_dialogue_is_truncated_never_the_summary(smollm2):
    fmt = get_format("chat", smollm2)
    long = Example(
        "long",
        "\n".join(f"#Person{i % 2 + 1}#: sentence number {i} of a long talk." for i in range(300)),
        SUMMARY,
    )
    enc = fmt.encode_train(long, 256)
    assert len(enc.input_ids) == 256
    assert enc.truncated_tokens > 0
    assert completion(smollm2, enc) == fmt.completion_ids(long)
    prompt = smollm2.decode(enc.input_ids[: enc.prompt_len])
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")


def test_summary_that_cannot_fit_is_refused(smollm2):
    with pytest.raises(TooLong, match="summary alone"):
        get_format("chat", smollm2).encode_train(Example("x", DIALOGUE, "word " * 400), 128)


def test_chat_format_without_template_says_what_to_do(smollm2):
    smollm2 = AutoTokenizer.from_pretrained(smollm2.name_or_path)
    smollm2.chat_template = None
    with pytest.raises(ValueError, match="use format 'plain'"):
        get_format("chat", smollm2)


def test_plain_and_alpaca_end_with_eos(llama3):
    for name in ("plain", "alpaca"):
        enc = get_format(name, llama3).encode_train(EXAMPLE, 1024)
        assert enc.labels[-1] == llama3.eos_token_id
    text = get_format("plain", llama3).prompt_text(EXAMPLE)
    assert text == f"Instruct: Summarize the following dialogue.\n{DIALOGUE}\nOutput:\n"


def test_alpaca_without_input_uses_the_no_input_header(llama3):
    fmt = get_format("alpaca", llama3)
    ex = Example("d", "", "Blue.", instruction="Name a colour.")
    assert fmt.prompt_text(ex).endswith("### Instruction:\nName a colour.\n\n### Response:\n")
    assert "### Input" not in llama3.decode(fmt.encode_prompt(ex).input_ids)


def test_unknown_format_lists_choices(llama3):
    with pytest.raises(ValueError, match=", ".join(FORMATS)):
        get_format("chatml", llama3)
