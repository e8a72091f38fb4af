"""Adapt a GPU recipe to the machine it runs on, and record every change."""

from __future__ import annotations

from training.recipe import add_plugin

# Axolotl picks fp16 when precision is left out on CPU, and its LoRA kernels and flash
# attention assert CUDA: a CPU run needs all of these set explicitly.
CPU_SETTINGS = {
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "flash_attention": False,
    "sample_packing": False,
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "lora_embedding_kernel": False,
}
CPU_OPTIMIZERS = {
    "paged_adamw_8bit": "adamw_torch",
    "paged_adamw_32bit": "adamw_torch",
    "adamw_bnb_8bit": "adamw_torch",
}


# Axolotl places each rank's model of a multi-process run on device LOCAL_RANK, a GPU
# index; with a memory budget for the CPU alone it places the model on the CPU
CPU_PROCESSES_MAX_MEMORY = {"cpu": "1024GiB"}


def adapt_to_cpu(config: dict, processes: int = 1) -> list[str]:
    """Make a GPU recipe runnable on CPU (in ``processes`` processes); return what changed,
    for the run's record."""
    changes = []
    if processes > 1 and config.get("max_memory") is None:
        config["max_memory"] = dict(CPU_PROCESSES_MAX_MEMORY)
        changes.append(f"max_memory: None -> {CPU_PROCESSES_MAX_MEMORY!r} (each process's model on the CPU)")
    for key, value in CPU_SETTINGS.items():
        if config.get(key, value) != value or key not in config:
            changes.append(f"{key}: {config.get(key)!r} -> {value!r}")
        config[key] = value
    if config.get("optimizer") in CPU_OPTIMIZERS:
        new = CPU_OPTIMIZERS[config["optimizer"]]
        changes.append(f"optimizer: {config['optimizer']} -> {new} (paged optimizers need CUDA)")
        config["optimizer"] = new
    liger = [p for p in config.get("plugins") or [] if "liger" in p.lower()]
    if liger:  # Liger's kernels are Triton: GPU only
        config["plugins"] = [p for p in config["plugins"] if p not in liger]
        if not config["plugins"]:
            del config["plugins"]
        for key in [k for k in config if k.startswith("liger_")]:
            del config[key]
        changes.append(f"plugins: {liger} off (Triton kernels need a GPU)")
    if config.get("adapter") == "qlora" and (config.get("val_set_size") or config.get("test_datasets")):
        # On CPU an evaluation pass repacks bitsandbytes' 4-bit weights and the gradients
        # that follow come out wrong: QLoRA on CPU trains without evaluation.
        config["val_set_size"] = 0
        for key in ("test_datasets", "eval_steps", "load_best_model_at_end", "metric_for_best_model"):
            config.pop(key, None)
        changes.append("evaluation during training off (CPU QLoRA: eval corrupts 4-bit gradients)")
    return changes


def gpu_found(gpu_gib: float | None) -> str:
    """What a memory choice was made on, for its record."""
    return "no GPU" if gpu_gib is None else f"smallest GPU in use: {gpu_gib:.1f} GiB"


def choose_checkpointing(config: dict, memory: dict, gpu_gib: float | None) -> str | None:
    """Resolve ``gradient_checkpointing: auto`` for the smallest GPU in use (``None``: no
    GPU): off from ``memory.checkpointing_off_from_gib``, on below. Returns the choice, for
    the run's record, or None when the recipe fixed it."""
    if config.get("gradient_checkpointing") != "auto":
        return None
    threshold = memory["checkpointing_off_from_gib"]
    config["gradient_checkpointing"] = gpu_gib is None or gpu_gib < threshold
    return f"gradient_checkpointing: auto -> {config['gradient_checkpointing']} ({gpu_found(gpu_gib)}; off from {threshold} GiB)"


# strategies that shard the base's weights: each process holds a slice, not the whole base the
# round trip rewrites at load
SHARDED_BASE = ("fsdp", "zero3")


def choose_nf4_round_trip(
    config: dict, memory: dict, gpu_gib: float | None, strategy: str | None = None
) -> str | None:
    """For a QLoRA recipe on a GPU of at least ``memory.nf4_round_trip_from_gib``: keep the base
    in 16 bits at the values its NF4 copy dequantizes to (training/nf4_roundtrip.py), so each
    step skips the dequantization. The adapter stays a QLoRA adapter: it is merged and
    evaluated on the same NF4 round trip. Not under a strategy that shards the base (FSDP,
    ZeRO-3). Returns the choice, for the run's record."""
    from training.nf4_roundtrip import PLUGIN

    threshold = memory["nf4_round_trip_from_gib"]
    if config.get("adapter") != "qlora" or threshold is None:
        return None
    if strategy in SHARDED_BASE:
        return f"base: 4-bit NF4 ({strategy} shards the base; the bf16 NF4 round trip needs it whole on every GPU)"
    if gpu_gib is None or gpu_gib < threshold:
        return f"base: 4-bit NF4 ({gpu_found(gpu_gib)}; the bf16 NF4 round trip from {threshold} GiB)"
    config.update(adapter="lora", load_in_4bit=False)
    add_plugin(config, PLUGIN)
    return f"base: bf16 at its NF4 round-trip values ({gpu_found(gpu_gib)}; from {threshold} GiB)"
