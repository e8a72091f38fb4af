"""The training benchmark's Axolotl plugin: loaded into the trainer's process through the
recipe's ``plugins:`` list, it times every optimizer step and counts the real (non-pad)
tokens of its micro-batches, and checks once that packed samples do not see each other.
With ``BENCH_PROFILE=A:B`` it also profiles optimizer steps A..B-1 (0-based) with the torch
profiler and writes where their time went (benchmarks/step_profile.py) to
``$BENCH_JSON.profile.json``, then counts step B's synchronizing calls by call site
(benchmarks/sync_sites.py) into ``$BENCH_JSON.syncs.md``; those steps are marked ``profiled``
and left out of the speed."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.sync_sites import counting_sync_sites
from benchmarks.sync_sites import markdown as sync_markdown

try:  # only inside Axolotl's process does the plugin base matter
    from axolotl.integrations.base import BasePlugin
except Exception:  # noqa: BLE001 - axolotl absent or broken: the plugin is not used then
    BasePlugin = object  # type: ignore[misc,assignment]


class BenchMeter(BasePlugin):  # type: ignore[misc,valid-type]
    """Axolotl plugin (``plugins: [benchmarks.train_meter.BenchMeter]``): per
    optimizer step, the wall time (CUDA-synchronized), the non-pad tokens and positions of
    its micro-batches and the loss; once, the packing-isolation check. Writes $BENCH_JSON."""

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        import torch
        from transformers import TrainerCallback

        tok = trainer.processing_class
        pad_id = tok.pad_token_id
        acc = {"real": torch.zeros((), dtype=torch.long), "pos": 0, "docs": 0, "calls": 0}
        record: dict[str, Any] = {
            "len_tokenizer": len(tok),
            "pad_token_id": pad_id,
            "embedding_rows": trainer.model.get_input_embeddings().weight.shape[0],
            "steps": [],
        }
        inner = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            ids = inputs["input_ids"]
            if "attention_mask" in inputs:
                real = (inputs["attention_mask"] != 0).sum()
            else:
                real = (ids != pad_id).sum()
            if "first_batch_keys" not in record:  # the run's first micro-batch, not each step's
                record["first_batch_keys"] = sorted(inputs.keys())
                record["first_batch_nonpad_ids"] = int((ids != pad_id).sum())
                record["first_batch_real"] = int(real)
                if "labels" in inputs:  # the tokens the loss is on: the summaries, not the prompts
                    record["first_batch_trained"] = int((inputs["labels"] != -100).sum())
                if os.environ.get("BENCH_CHECK_PACKING", "1") == "1" and "position_ids" in inputs:
                    record["packing_check"] = packing_check(model, inputs, pad_id)
                    if torch.cuda.is_available():  # the check's eval passes are not training
                        torch.cuda.reset_peak_memory_stats()
            acc["real"] = acc["real"] + real.cpu()
            acc["pos"] += ids.numel()
            if "position_ids" in inputs:
                acc["docs"] += int((inputs["position_ids"] == 0).sum())
            acc["calls"] += 1
            return inner(model, inputs, *args, **kwargs)

        trainer.training_step = training_step
        state: dict[str, Any] = {"t": None, "profiler": None}
        cuda = torch.cuda.is_available()
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        first, _, last = os.environ.get("BENCH_PROFILE", "").partition(":")
        profiled = range(int(first), int(last)) if first else range(0)
        sync_step = profiled.stop if profiled else None  # the step after the profiled ones
        lora_rank = int(cfg.get("lora_r") or 0)

        class Meter(TrainerCallback):
            def on_train_begin(self, args, st, control, **kw):
                sync()
                state["t"] = time.perf_counter()

            def on_step_begin(self, args, st, control, **kw):
                if profiled and len(record["steps"]) == profiled.start:
                    state["profiler"] = start_profiler(cuda)
                    sync()
                    state["t"] = time.perf_counter()
                if len(record["steps"]) == sync_step:
                    state["syncs"] = ExitStack()
                    state["sites"] = state["syncs"].enter_context(counting_sync_sites(cuda))

            def on_step_end(self, args, st, control, **kw):
                sync()
                now = time.perf_counter()
                # Axolotl resets the peak counters when it logs: read them per step.
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
                record["peak_allocated_gib"] = max(record.get("peak_allocated_gib", 0.0), peak)
                index = len(record["steps"])
                record["steps"].append(
                    {
                        "profiled": index in profiled or index == sync_step,
                        "seconds": now - state["t"],
                        "real": int(acc["real"]),
                        "peak_gib": peak,
                        "positions": acc["pos"],
                        "rows_docs": acc["docs"],
                        "micro_batches": acc["calls"],
                    }
                )
                if state["profiler"] is not None and index == profiled.stop - 1:
                    wall = sum(s["seconds"] for s in record["steps"] if s["profiled"])
                    write_profile(state["profiler"], lora_rank, wall)
                    state["profiler"] = None
                    sync()
                    now = time.perf_counter()
                if index == sync_step:
                    state["syncs"].close()
                    Path(os.environ["BENCH_JSON"] + ".syncs.md").write_text(
                        sync_markdown(state["sites"]) + "\n"
                    )
                state["t"] = now
                Path(os.environ["BENCH_JSON"] + ".partial").write_text(json.dumps(record))
                acc.update(real=torch.zeros((), dtype=torch.long), pos=0, docs=0, calls=0)

            def on_log(self, args, st, control, logs=None, **kw):
                if logs and "loss" in logs and record["steps"]:
                    record["steps"][-1]["loss"] = logs["loss"]
                    for key in (
                        "tokens/total",
                        "tokens/trainable",
                        "grad_norm",
                        "memory/max_allocated (GiB)",
                    ):
                        if key in logs:
                            record["steps"][-1][key] = logs[key]

            def on_train_end(self, args, st, control, **kw):
                record["peak_reserved_gib_at_end"] = torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0
                Path(os.environ["BENCH_JSON"]).write_text(json.dumps(record, indent=1))

        trainer.add_callback(Meter())


def start_profiler(cuda: bool) -> Any:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    prof = profile(activities=activities, record_shapes=True)
    prof.__enter__()
    return prof


def write_profile(prof: Any, lora_rank: int, wall_seconds: float) -> None:
    """Stop the profiler; write the breakdown (JSON and a Markdown table) beside $BENCH_JSON."""
    from benchmarks.step_profile import breakdown, markdown

    started = time.perf_counter()
    print(
        "step profile: sorting the profiled steps' events (minutes for an 8B model)",
        file=sys.stderr,
        flush=True,
    )
    prof.__exit__(None, None, None)
    result = breakdown(prof.events(), lora_rank, wall_seconds)
    base = os.environ["BENCH_JSON"]
    Path(base + ".profile.json").write_text(json.dumps(result, indent=1))
    Path(base + ".profile.md").write_text(markdown(result) + "\n")
    table = prof.key_averages().table(
        sort_by="self_device_time_total" if prof.use_device else "self_cpu_time_total", row_limit=40
    )
    Path(base + ".profile.txt").write_text(table)
    print(f"step profile: written in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def packing_check(model: Any, inputs: dict, pad_id: int) -> dict:
    """Per-sample mean loss of the first packed row's samples: (a) in the packed row as
    Axolotl feeds it (position_ids resetting, no attention mask), (b) each sample alone,
    (c) the packed row with one running position range (samples see earlier ones: what a
    leak looks like). (a) = (b) within bf16 noise means packing keeps samples separate."""
    import torch
    import torch.nn.functional as F

    dev = next(model.parameters()).device
    ids, pos, labels = (inputs[k][:1].to(dev) for k in ("input_ids", "position_ids", "labels"))
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    spans = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if (labels[0, a:b] != -100).any()]

    def per_sample(
        logits: torch.Tensor, offset_spans: list[tuple[int, int]], lab: torch.Tensor
    ) -> list[float]:
        out = []
        for a, b in offset_spans:
            lg, lb = logits[0, a : b - 1].float(), lab[0, a + 1 : b]
            out.append(F.cross_entropy(lg, lb, ignore_index=-100).item())
        return out

    was_training = model.training
    model.eval()
    with torch.no_grad():
        packed = per_sample(model(input_ids=ids, position_ids=pos, use_cache=False).logits, spans, labels)
        alone = []
        for a, b in spans:
            n = b - a
            lg = model(
                input_ids=ids[:, a:b], position_ids=torch.arange(n, device=ids.device)[None], use_cache=False
            ).logits
            alone += per_sample(lg, [(0, n)], labels[:, a:b])
        run = torch.arange(ids.shape[1], device=ids.device)[None]
        leaky = per_sample(model(input_ids=ids, position_ids=run, use_cache=False).logits, spans, labels)
    model.train(was_training)
    return {
        "samples": len(spans),
        "max_abs_diff_packed_vs_alone": max(abs(p - a) for p, a in zip(packed, alone, strict=True)),
        "max_abs_diff_leaky_vs_alone": max(abs(p - a) for p, a in zip(leaky[1:], alone[1:], strict=True))
        if len(spans) > 1
        else None,
        "loss_packed": packed,
        "loss_alone": alone,
        "loss_leaky": leaky,
    }
