"""transformers ``generate``: where vLLM cannot serve the model (encoder-decoders such as
Flan-T5), as a reference implementation, and as the deterministic path on CPU."""

from __future__ import annotations

import gc
from collections.abc import Sequence

from eval.backends import EngineSettings, Generation, chunks, cut_at_stop, has_cuda


class HFBackend:
    """Left-padded batches of ``settings.batch_size``, greedy or beam search; causal LMs and seq2seq."""

    name = "hf"
    adapters_per_request = False
    serves_seq2seq = True

    def __init__(self, model: str, settings: EngineSettings, adapter: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        cuda = has_cuda()
        dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
        if settings.dtype:
            dtype = getattr(torch, settings.dtype)
        cls = AutoModelForSeq2SeqLM if settings.seq2seq else AutoModelForCausalLM
        kwargs: dict = {"dtype": dtype}
        if settings.four_bit_from:
            from training.merge import nf4_config

            kwargs = {
                "dtype": getattr(torch, settings.four_bit_from),
                "quantization_config": nf4_config(dtype),
            }
        self.model = cls.from_pretrained(model, device_map="auto" if cuda else None, **kwargs)
        if adapter:
            from peft import PeftConfig, PeftModel

            # Load the LoRA layers without PEFT's task wrapper and generate through the model
            # that now carries them: PeftModelForSeq2SeqLM calls a transformers helper that
            # transformers 5.19 removed (peft 0.20), and the LoRA math is the same.
            config = PeftConfig.from_pretrained(adapter)
            config.task_type = None
            self.model = PeftModel.from_pretrained(self.model, adapter, config=config).get_base_model()
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(settings.tokenizer or model)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.seq2seq = settings.seq2seq
        self.batch_size = settings.batch_size

    def generate(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        adapter: str | None = None,
        num_beams: int = 1,
        length_penalty: float | None = None,
    ) -> list[Generation]:
        import torch

        if adapter:
            raise ValueError("the hf backend loads its adapter at start: pass it to HFBackend(...)")
        results: list[Generation] = []
        device = next(self.model.parameters()).device
        for batch in chunks(prompts, self.batch_size):
            width = max(len(p) for p in batch)
            ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in batch], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=num_beams,
                    **({} if length_penalty is None else {"length_penalty": length_penalty}),
                    eos_token_id=list(stop_ids),
                    pad_token_id=self.pad_id,
                )
            # a decoder's output starts with its start token; a causal LM's repeats the prompt
            new = out[:, 1:] if self.seq2seq else out[:, width:]
            for row in new.tolist():
                kept, stopped = cut_at_stop(row, stop_ids)
                results.append(
                    Generation(
                        self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                        len(kept) + stopped,
                        stopped,
                    )
                )
        return results

    def close(self) -> None:
        del self.model
        gc.collect()
