"""What a finished run measured, read from the trainer's own log (the newest checkpoint's
``trainer_state.json``): loss at the start and end, throughput; and from ``ranks.json``
(written by ``training/ranks.py`` inside the trainer): the world size the trainer had and
every rank's host, device and peak GPU memory.

Why here: every run, on one GPU or several, reports the same few figures in ``run.yml``,
so scaling and recipe tables come from ``make train``'s own path, not from a separate
benchmark loop.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# keys Axolotl adds to each training log entry (axolotl/core/trainers/base.py)
TOKENS_PER_GPU = "tokens/train_per_sec_per_gpu"  # non-masked (trained-on) tokens, per GPU
TOKENS_TOTAL = "tokens/total"  # every token position seen, padding included, all GPUs
TOKENS_TRAINABLE = "tokens/trainable"
PEAK_GIB = "memory/max_allocated (GiB)"  # the logging rank's torch.cuda.max_memory_allocated
STEP_SECONDS = "seconds_per_step"  # logged by training/seq2seq.py, which has no token counter
# written by training/ranks.py into the output folder: {"world_size": N, "ranks": [{rank, host, device, peak_gib}]}
RANKS_FILE = "ranks.json"


def newest_trainer_state(run_dir: Path) -> dict | None:
    states = sorted(
        (run_dir / "adapter").glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.rsplit("-", 1)[1]),
    )
    return json.loads(states[-1].read_text()) if states else None


def read_ranks(run_dir: Path) -> dict | None:
    path = run_dir / "adapter" / RANKS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def summarize_training(run_dir: Path, processes: int) -> dict | None:
    """Loss, throughput, ranks and peak memory of a run; None when it saved no checkpoint.

    ``processes`` is the number the launch asked for, ``world_size`` the number the trainer
    had (from ``ranks.json``; throughput counts it, or ``processes`` without the file). Throughput is the median over logging windows after the first (which holds start-up
    and compilation), summed over the world size. ``positions_per_second`` counts every
    token position of the batches (packed rows are nearly full); ``trained_tokens_per_second``
    only the tokens that carry loss (the summaries). ``peak_gib_max`` is the largest of the
    ranks' peaks, each rank's is in ``ranks`` (GPU runs only).
    """
    state = newest_trainer_state(run_dir)
    if state is None:
        return None
    train_logs = [h for h in state["log_history"] if "loss" in h]
    if not train_logs:
        return None
    ranks = read_ranks(run_dir)
    world_size = ranks["world_size"] if ranks else processes
    summary: dict = {
        "steps": state["global_step"],
        "processes": processes,
        "loss_first": train_logs[0]["loss"],
        "loss_last": train_logs[-1]["loss"],
    }
    step_seconds = _step_seconds(train_logs, world_size)
    if step_seconds:
        summary["seconds_per_step"] = round(statistics.median(step_seconds), 3)
    rates = [h[TOKENS_PER_GPU] for h in train_logs[1:] if h.get(TOKENS_PER_GPU)]
    if rates:
        per_gpu = statistics.median(rates)
        summary["trained_tokens_per_second"] = round(per_gpu * world_size)
        share = _trained_share(train_logs)
        if share:
            summary["positions_per_second"] = round(per_gpu * world_size / share)
    if ranks:
        summary["world_size"] = world_size
        summary["ranks"] = ranks["ranks"]
        peaks = [r["peak_gib"] for r in ranks["ranks"] if "peak_gib" in r]  # none on CPU
        if peaks:
            summary["peak_gib_max"] = max(peaks)
    return summary


def _step_seconds(logs: list[dict], processes: int) -> list[float]:
    """Seconds per optimizer step in each logging window after the first: logged directly
    (seq2seq), or the window's trained tokens over its rate (Axolotl)."""
    if any(STEP_SECONDS in h for h in logs):
        return [h[STEP_SECONDS] for h in logs[1:] if h.get(STEP_SECONDS)]
    seconds = []
    for before, after in zip(logs, logs[1:], strict=False):
        rate, steps = after.get(TOKENS_PER_GPU), after["step"] - before["step"]
        if rate and steps > 0 and TOKENS_TRAINABLE in before and TOKENS_TRAINABLE in after:
            tokens = after[TOKENS_TRAINABLE] - before[TOKENS_TRAINABLE]
            seconds.append(tokens / (rate * processes) / steps)
    return seconds


def _trained_share(logs: list[dict]) -> float | None:
    """Trained tokens as a share of all positions, over the whole run."""
    last = logs[-1]
    if last.get(TOKENS_TOTAL) and last.get(TOKENS_TRAINABLE):
        return last[TOKENS_TRAINABLE] / last[TOKENS_TOTAL]
    return None


def one_line(summary: dict) -> str:
    parts = [f"{summary['steps']} steps", f"loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f}"]
    if "seconds_per_step" in summary:
        parts.append(f"{summary['seconds_per_step']} s/step")
    if "positions_per_second" in summary:
        parts.append(f"{summary['positions_per_second']:,} token positions/s")
    if "trained_tokens_per_second" in summary:
        parts.append(f"{summary['trained_tokens_per_second']:,} trained tokens/s")
    if "peak_gib_max" in summary:
        parts.append(f"peak {summary['peak_gib_max']} GiB (the largest of {summary['world_size']} GPUs)")
    return ", ".join(parts)
