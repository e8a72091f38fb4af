"""Evaluation over several GPUs: one engine replica per GPU, each generating an interleaved
share of the items (data parallel), every share saved as it goes and merged in item order.

Why replicas and not one engine over all GPUs: a model that fits one GPU generates fastest as
one engine per GPU, with no communication between them; vLLM's own data parallelism for
offline use is likewise one engine per rank. Each replica is a process of its own
(``python -m eval.data_parallel``) pinned to one GPU through ``CUDA_VISIBLE_DEVICES``; it
writes ``<system>.shard-K-of-N.partial.jsonl`` beside the evaluation's own partial files, and
the parent folds those in before it starts (a killed run resumes) and after the replicas end.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from datasets_fmt import atomic
from eval.pipeline import EvalRequest, Evaluation, EvaluationError, keep_log_visible, log, seeded_subset
from eval.predictions import PartialPredictions


def shard_of(items: list, index: int, count: int) -> list:
    """Every ``count``-th item from ``index``: shares of like length mixes."""
    return items[index::count]


def shard_file(out_dir: Path, system: str, index: int, count: int) -> Path:
    # ends in .partial.jsonl: a change of generation settings discards it with the rest
    return out_dir / f"{system}.shard-{index}-of-{count}.partial.jsonl"


class Shard:
    """Mixed into an evaluation class (``sharded``): one replica's evaluation, its share of the
    items, into its own partial files; the items the evaluation already holds are skipped.
    What the replica makes for itself (merged checkpoint copies) goes into a folder of its own."""

    def __init__(self, request: EvalRequest, index: int, count: int, **options):
        super().__init__(request, **options)
        self.index, self.count = index, count

    def scratch_dir(self) -> Path:
        return self.out_dir / "shards" / f"scratch-{self.index}"

    def select(self, examples: list, limit: int | None) -> list:
        return shard_of(seeded_subset(examples, limit), self.index, self.count)

    def open_partials(self) -> dict[str, PartialPredictions]:
        whole = super().open_partials()
        mine = {}
        for name in self.system_names():
            mine[name] = PartialPredictions(shard_file(self.out_dir, name, self.index, self.count))
            mine[name].done.update(
                {i: row for i, row in whole[name].done.items() if i not in mine[name].done}
            )
        return mine


def sharded(cls: type[Evaluation]) -> type[Evaluation]:
    return type(f"Shard{cls.__name__}", (Shard, cls), {})


def gather(evaluation: Evaluation) -> int:
    """Fold every replica's partial file into the evaluation's, then remove it; return the
    number of items taken over."""
    taken = 0
    for name, partial in evaluation.partials.items():
        for path in sorted(evaluation.out_dir.glob(f"{name}.shard-*.partial.jsonl")):
            rows = [row for i, row in PartialPredictions(path).done.items() if i not in partial.done]
            partial.append(rows)
            taken += len(rows)
            path.unlink()
    return taken


def devices(count: int, cuda: bool) -> list[str | None]:
    """The GPU each replica gets: the first ``count`` visible ones (None on a CPU)."""
    if not cuda:
        return [None] * count
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(_device_count())]
    if len(ids) < count:
        raise EvaluationError(
            f"GPUS={count} but {len(ids)} GPU(s) are visible: give GPUS={len(ids)} or fewer"
        )
    return ids[:count]


def _device_count() -> int:
    import torch

    return torch.cuda.device_count()


def generate(evaluation: Evaluation, count: int, cuda: bool) -> dict:
    """Generate every missing item with ``count`` replicas; return the timing for the report:
    per system the items and the replicas' summed rate, and each replica's own figures."""
    gpus = devices(count, cuda)
    resumed = gather(evaluation)
    if resumed:
        log.info("took over %d item(s) a killed run's replicas had generated", resumed)
    if not evaluation.missing():
        return evaluation.generate()  # nothing to generate: says so per system
    evaluation.prepare_for_replicas()
    shards_dir = evaluation.out_dir / "shards"
    shards_dir.mkdir(exist_ok=True)
    request_file = shards_dir / "request.json"
    fields = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(evaluation.request).items()}
    kind = type(evaluation)
    atomic.write_json(
        request_file,
        {
            "request": fields,
            "class": f"{kind.__module__}:{kind.__qualname__}",
            "options": evaluation.replica_options(),
        },
    )
    if not cuda:
        log.info("no GPU: the %d replicas share the CPU (this checks the path; it is not faster)", count)
    started = time.time()
    procs = []
    for index, gpu in enumerate(gpus):
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})}
        cmd = [sys.executable, "-m", "eval.data_parallel", str(request_file), str(index), str(count)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    wall = time.time() - started
    gather(evaluation)
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        raise EvaluationError(
            f"replica(s) {failed} of {count} failed (exit {[codes[i] for i in failed]}; their messages are above); "
            "what every replica generated is kept: run the same command again to resume"
        )
    left = evaluation.missing()
    if left:
        raise EvaluationError(f"the replicas ended without generating {left}: run the same command again")
    replicas = [json.loads((shards_dir / f"timing-{i}.json").read_text()) for i in range(count)]
    shutil.rmtree(shards_dir)  # the replicas' request and figures: in the report from here on
    return evaluation.merged_replica_timing(replicas, wall)


def merged_timing(replicas: list[dict], wall: float) -> dict:
    """The report's figures for replicas that ran side by side: items summed, rates summed."""
    throughput = {}
    for name in {n for r in replicas for n in r["throughput"]}:
        parts = [r["throughput"][name] for r in replicas if name in r["throughput"]]
        throughput[name] = {
            "items": sum(p["items"] for p in parts),
            "prompts_per_s": round(sum(p["prompts_per_s"] for p in parts), 3),
            "output_tokens_per_s": round(sum(p["output_tokens_per_s"] for p in parts), 1),
        }
    starts = {n: max(r["engine_start_seconds"].get(n, 0) for r in replicas) for n in throughput}
    return {
        "throughput": throughput,
        "engine_start_seconds": starts,
        "engine_starts": sum(r["engine_starts"] for r in replicas),
        "data_parallel_replicas": len(replicas),
        "generation_wall_seconds": round(wall, 1),
    }


def run_replica(request_file: Path, index: int, count: int) -> int:
    keep_log_visible()
    log.handlers[0].setFormatter(logging.Formatter(f"%(name)s[{index + 1}/{count}]: %(message)s"))
    saved = json.loads(request_file.read_text())
    fields = saved["request"]
    for key in ("run_dir", "out_dir"):
        fields[key] = Path(fields[key]) if fields[key] else None
    fields["overrides"] = tuple(fields["overrides"])
    module, name = saved["class"].split(":")
    kind = getattr(importlib.import_module(module), name)
    evaluation = sharded(kind)(EvalRequest(**{**fields, "gpus": 1}), index, count, **saved["options"])
    evaluation.setup()
    timing = evaluation.generate()
    atomic.write_json(request_file.parent / f"timing-{index}.json", timing)
    return 0


if __name__ == "__main__":
    sys.exit(run_replica(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
