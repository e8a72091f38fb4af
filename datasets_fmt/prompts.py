"""The prompt formats: the ONE place where a prompt is built, for training and evaluation.

A prompt is ``prefix + source + suffix``; the completion is ``target + end``. Training
(``encode_train``) and evaluation (``encode_prompt``) tokenize exactly the same pieces, so
the token ids a model is evaluated on are the ones it was trained on. Only the source (the
dialogue) is ever truncated: the instruction, the summary and its end token are kept whole.

Formats:
- ``chat``: instruct models, through the tokenizer's own chat template (instruction and
  dialogue as the user turn, the summary as the assistant turn, then the template's
  end-of-turn token, e.g. Llama-3's ``<|eot_id|>``).
- ``plain``: base models, Phi-2 style ``Instruct: ...\\nOutput:``.
- ``alpaca``: instruction corpora (Dolly) for base models, the Stanford Alpaca layout.
- ``seq2seq``: encoder-decoder models (Flan-T5): the prompt is the encoder input.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from datasets_fmt.records import Example

SUMMARY_INSTRUCTION = "Summarize the following dialogue."
_SENTINEL = "\ue000SOURCE\ue000"  # private-use code points: never in real text

ALPACA_HEADER = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
)
ALPACA_HEADER_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    truncated_tokens: int  # how many source tokens were cut to fit

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)


class TooLong(ValueError):
    """The instruction and the full summary alone do not fit the token budget."""


class PromptFormat:
    """Base class: subclasses say how the text around the source and the end token look."""

    name = ""
    is_seq2seq = False

    def __init__(self, tokenizer, instruction: str = SUMMARY_INSTRUCTION):
        self.tokenizer = tokenizer
        self.instruction = instruction

    # -- what a subclass defines -------------------------------------------------------
    def _prompt_text(self, instruction: str, source: str) -> str:
        raise NotImplementedError

    @cached_property
    def end_text(self) -> str:
        """Text that ends a completion (the model's stop token)."""
        return self.tokenizer.eos_token

    @property
    def adds_bos(self) -> bool:
        """Whether the tokenizer itself would prepend BOS to a plain encode."""
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        return self.tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]

    # -- shared machinery --------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def instruction_for(self, example: Example) -> str:
        return example.instruction or self.instruction

    def prompt_text(self, example: Example) -> str:
        """The untruncated prompt as text (for reports and model cards)."""
        return self._prompt_text(self.instruction_for(example), example.source)

    def _prompt_pieces(self, example: Example) -> tuple[list[int], list[int], list[int]]:
        template = self._prompt_text(self.instruction_for(example), _SENTINEL)
        prefix, _, suffix = template.partition(_SENTINEL)
        prefix_ids = ([self.tokenizer.bos_token_id] if self.adds_bos else []) + self.text_ids(prefix)
        return prefix_ids, self.text_ids(example.source), self.text_ids(suffix)

    @cached_property
    def stop_token_ids(self) -> list[int]:
        return self.text_ids(self.end_text)

    def completion_ids(self, example: Example) -> list[int]:
        return self.text_ids(example.target) + self.stop_token_ids

    def encode_prompt(self, example: Example, max_tokens: int | None = None) -> Encoded:
        """Prompt ids for generation, the source cut so the prompt fits ``max_tokens``."""
        prefix, source, suffix = self._prompt_pieces(example)
        cut = 0
        if max_tokens is not None:
            budget = max_tokens - len(prefix) - len(suffix)
            if budget < 1:
                raise TooLong(
                    f"record {example.id}: the prompt without the dialogue needs {len(prefix) + len(suffix)} tokens, more than {max_tokens}"
                )
            cut = max(0, len(source) - budget)
            source = source[: len(source) - cut]
        ids = prefix + source + suffix
        return Encoded(ids, [IGNORE_INDEX] * len(ids), len(ids), cut)

    def encode_train(self, example: Example, max_len: int) -> Encoded:
        """Prompt + completion, loss only on the completion (summary and end token)."""
        completion = self.completion_ids(example)
        if len(completion) >= max_len:
            raise TooLong(
                f"record {example.id}: the summary alone is {len(completion)} tokens, sequence_len is {max_len}"
            )
        prompt = self.encode_prompt(example, max_len - len(completion))
        if self.is_seq2seq:
            return Encoded(prompt.input_ids, completion, prompt.prompt_len, prompt.truncated_tokens)
        ids = prompt.input_ids + completion
        labels = [IGNORE_INDEX] * prompt.prompt_len + completion
        return Encoded(ids, labels, prompt.prompt_len, prompt.truncated_tokens)


class ChatFormat(PromptFormat):
    name = "chat"

    def __init__(self, tokenizer, instruction: str = SUMMARY_INSTRUCTION):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"format 'chat' needs a tokenizer with a chat template, and {tokenizer.name_or_path!r} has none: "
                "use an Instruct model, set `chat_template:` in the recipe, or use format 'plain'"
            )
        super().__init__(tokenizer, instruction)

    def _render(self, user: str, assistant: str | None = None) -> str:
        messages = [{"role": "user", "content": user}]
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=assistant is None
        )

    def _prompt_text(self, instruction: str, source: str) -> str:
        return self._render(f"{instruction}\n\n{source}")

    @property
    def adds_bos(self) -> bool:
        return False  # the chat template writes BOS itself where the model wants one

    @cached_property
    def end_text(self) -> str:
        """What the template writes after the assistant's text, up to its end-of-turn token."""
        probe = "The summary."
        prompt = self._render("x")
        full = self._render("x", probe)
        if not full.startswith(prompt + probe):
            raise ValueError(
                f"the chat template of {self.tokenizer.name_or_path!r} does not render the assistant turn "
                "as prompt + text: this format cannot mask the loss reliably; use format 'plain'"
            )
        end = full[len(prompt) + len(probe) :].rstrip()
        if not end:
            raise ValueError(
                f"the chat template of {self.tokenizer.name_or_path!r} writes no end-of-turn token"
            )
        return end


class PlainFormat(PromptFormat):
    name = "plain"

    def _prompt_text(self, instruction: str, source: str) -> str:
        return f"Instruct: {instruction}\n{source}\nOutput:\n"


class AlpacaFormat(PromptFormat):
    name = "alpaca"

    def _prompt_text(self, instruction: str, source: str) -> str:
        if source:
            return (
                f"{ALPACA_HEADER}### Instruction:\n{instruction}\n\n### Input:\n{source}\n\n### Response:\n"
            )
        return f"{ALPACA_HEADER_NO_INPUT}### Instruction:\n{instruction}\n\n### Response:\n"

    def _prompt_pieces(self, example: Example) -> tuple[list[int], list[int], list[int]]:
        if example.source:
            return super()._prompt_pieces(example)
        bos = [self.tokenizer.bos_token_id] if self.adds_bos else []
        return bos + self.text_ids(self._prompt_text(self.instruction_for(example), "")), [], []


class Seq2SeqFormat(PromptFormat):
    name = "seq2seq"
    is_seq2seq = True

    def _prompt_text(self, instruction: str, source: str) -> str:
        return f"{instruction}\n\n{source}\n\nSummary:"

    def _prompt_pieces(self, example: Example) -> tuple[list[int], list[int], list[int]]:
        prefix, source, suffix = super()._prompt_pieces(example)
        return prefix, source, suffix + self.stop_token_ids  # T5's encoder input ends with </s>


@dataclass(frozen=True)
class FitReport:
    """How a corpus fits ``max_len`` under a format (the runner's data check, the benchmark)."""

    tokens: int  # in the records that fit
    truncated: int  # records whose dialogue was cut
    max_tokens_cut: int
    too_long: int  # records whose summary alone does not fit


def fit_report(fmt: PromptFormat, examples: list[Example], max_len: int) -> FitReport:
    tokens = truncated = cut = too_long = 0
    for ex in examples:
        try:
            enc = fmt.encode_train(ex, max_len)
        except TooLong:
            too_long += 1
            continue
        tokens += len(enc.input_ids)
        truncated += enc.truncated_tokens > 0
        cut = max(cut, enc.truncated_tokens)
    return FitReport(tokens, truncated, cut, too_long)


FORMATS: dict[str, type[PromptFormat]] = {
    cls.name: cls for cls in (ChatFormat, PlainFormat, AlpacaFormat, Seq2SeqFormat)
}


def get_format(name: str, tokenizer, instruction: str | None = None) -> PromptFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown prompt format '{name}': choose one of {', '.join(FORMATS)}")
    return FORMATS[name](tokenizer, instruction or SUMMARY_INSTRUCTION)
