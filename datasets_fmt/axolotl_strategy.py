"""Adapter from :mod:`datasets_fmt.prompts` to Axolotl's prompt-strategy interface.

Axolotl imports ``type: datasets_fmt.axolotl_<format>`` and calls its ``load``; the rows it
passes are the normalized JSONL that ``scripts/train.py`` prepared (see ``Example``).
"""

from __future__ import annotations

import logging

from axolotl.prompt_tokenizers import PromptTokenizingStrategy

from datasets_fmt.prompts import TooLong, get_format
from datasets_fmt.records import Example

log = logging.getLogger(__name__)


class SummaryStrategy(PromptTokenizingStrategy):
    def __init__(self, fmt_name: str, tokenizer, sequence_len: int):
        super().__init__(None, tokenizer, train_on_inputs=False, sequence_len=sequence_len)
        self.fmt = get_format(fmt_name, tokenizer)

    def tokenize_prompt(self, prompt: dict) -> dict:
        try:
            enc = self.fmt.encode_train(Example.from_json(prompt), self.sequence_len)
        except TooLong as err:  # counted by the runner's data check; Axolotl drops empty rows
            log.warning("dropped: %s", err)
            return {"input_ids": [], "attention_mask": [], "labels": []}
        return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": enc.labels}


def loader(fmt_name: str):
    def load(tokenizer, cfg, ds_cfg=None):
        return SummaryStrategy(fmt_name, tokenizer, cfg.sequence_len)

    return load
