"""Choose a checkpoint by ROUGE: score every saved checkpoint of a run on held-out data.

Trainers keep the checkpoint with the lowest evaluation loss; what a user wants is the one
that summarizes best. This generates with every checkpoint (and the base, as step 0) on the
recipe's validation split and scores the texts, beside each step's loss. Where the backend
serves adapters per request (vLLM), all checkpoints share ONE engine as separate LoRA
adapters, and their requests share its batches. Where checkpoints are merged into the base
(vLLM on a CPU), one vLLM engine serves them in turn, each merged copy's weights loaded into
it in place. Otherwise (the hf backend, quantized, full fine-tuning) each checkpoint gets its
own engine. Merged copies are removed once generated.

Writes into ``<run>/eval-checkpoints/``: ``scores.json`` (with the best checkpoint, which
``make eval CHECKPOINT=best`` evaluates), ``predictions.jsonl`` (ids and texts per
checkpoint), ``report.md`` and ``report.html``. Resumable like the evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from datasets_fmt import atomic
from datasets_fmt.records import DataError
from eval.backends import ADAPTER_MODES, Backend, chunks, reloads_exactly
from eval.checkpoint_paths import OUT_NAME, find_checkpoints
from eval.checkpoint_report import checkpoint_report
from eval.metrics import summarize
from eval.pipeline import (
    FULL,
    LIMIT_HELP,
    EvalRequest,
    Evaluation,
    EvaluationError,
    System,
    add_deterministic_argument,
    add_gpus_argument,
    add_overrides_argument,
    beam_count,
    generate,
    keep_log_visible,
    run_system,
)
from eval.predictions import PartialPredictions
from eval.render import to_html, to_markdown
from eval.report import loss_history
from training.run_record import quantized_from

log = logging.getLogger("evaluate")
ENGINES = ("auto", "shared", "per-checkpoint")
MAX_LORAS = 8  # adapters in one batch; vLLM swaps in further ones from its CPU cache
RUN_SPECIFIC = ("adapter", "adapter_trained")  # fingerprint keys the base's generations do not depend on


def loss_at_steps(run_dir: Path, steps: list[int]) -> dict[int, dict]:
    """Evaluation loss logged at each step, and the last training loss logged up to it."""
    history = loss_history(run_dir)
    out = {}
    for step in steps:
        train = [h["loss"] for h in history if "loss" in h and h["step"] <= step]
        val = [h["eval_loss"] for h in history if "eval_loss" in h and h["step"] == step]
        out[step] = {"train_loss": train[-1] if train else None, "eval_loss": val[-1] if val else None}
    return out


def best_of(rows: list[dict], key: str) -> dict:
    """The checkpoint with the highest mean-over-references score; the earlier one on a tie."""
    trained = [r for r in rows if r["step"] > 0]
    return max(trained, key=lambda r: (round(r["scores"][key]["mean"], 6), -r["step"]))


class CheckpointEvaluation(Evaluation):
    """The evaluation of one run, with its checkpoints as the systems."""

    def __init__(self, request: EvalRequest, engines: str = "auto", base_from: Sequence[Path] = ()):
        super().__init__(request)
        self.out_dir = (request.out_dir or self.run_dir / OUT_NAME).resolve()
        self.base_from = list(base_from)
        self.checkpoints = find_checkpoints(self.run_dir)
        if not self.checkpoints:
            raise EvaluationError(
                f"{self.run_dir / 'adapter'} holds no checkpoint-*/ with an adapter or model: train with save_steps "
                "and a save_total_limit that keeps them (recipes/_base.yml keeps 100; Axolotl reads null as 4)"
            )
        self.engines = engines

    def settings(self) -> dict:
        s = super().settings()
        if self.request.split is None:
            split = self.run["data"].get("validation_split")
            if not split:
                raise EvaluationError(
                    f"{self.run['recipe']} names no data.validation_split: choosing on the test split would "
                    "overstate the result; set data.validation_split in the recipe or pass SPLIT="
                )
            s["split"] = split
        return s

    def setup(self) -> None:
        super().setup()
        shared = self.mode == "lora" and self.backend_cls.adapters_per_request
        if self.engines == "per-checkpoint":
            shared = False
        elif self.engines == "shared" and not shared:
            raise EvaluationError(
                f"one shared engine needs LoRA adapters served per request: backend {self.backend_name}, "
                f"adapter mode {self.mode}"
            )
        self.shared = shared
        self.reload_in_place = (
            self.engines == "auto"
            and self.mode in ("merged", FULL)
            and reloads_exactly(self.backend_cls, self.run["base_model"], self.mode == FULL)
        )
        if shared:
            self.engine_settings = replace(
                self.engine_settings,
                max_loras=min(len(self.checkpoints), MAX_LORAS),
                # generate_shared mixes every system's requests for a chunk of items
                max_batch=self.engine_settings.max_batch * len(self.system_names()),
            )

    def system_names(self) -> list[str]:
        return ["base", *(c.name for c in self.checkpoints)]

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "split": self.settings()["split"]}

    def open_partials(self) -> dict[str, PartialPredictions]:
        partials = super().open_partials()
        if not partials["base"].done:
            for source in self.base_from:
                if self.take_base(source.resolve(), partials["base"]):
                    break
        return partials

    def take_base(self, source: Path, base: PartialPredictions) -> bool:
        """Copy the base's generations from another run's checkpoint evaluation when everything
        that shapes them matches: a sweep's points share one base, so it is generated once per
        kind of point (LoRA and full fine-tunes serve the base differently). True if taken."""
        settings = source / "settings.json"
        if source == self.out_dir or not settings.exists():
            return False
        theirs, ours = json.loads(settings.read_text()), self.fingerprint()
        if any(theirs.get(k) != v for k, v in ours.items() if k not in RUN_SPECIFIC):
            log.info("base: %s was generated under other settings", source)
            return False
        rows = PartialPredictions(source / "base.partial.jsonl").done
        wanted = [rows[ex.id] for ex in self.examples if ex.id in rows]
        base.append(wanted)
        log.info("base: %d of %d generations taken from %s", len(wanted), len(self.examples), source)
        return True

    def checkpoint_systems(self) -> list[System]:
        base = self.run["base_model"]
        if self.mode == FULL:
            return [System("base", base, None)] + [
                System(c.name, str(c.path), None) for c in self.checkpoints
            ]
        quantized = self.mode == "quantized"
        return [System("base", base, None)] + [
            System(c.name, base, str(c.path), quantized) for c in self.checkpoints
        ]

    def pending(self) -> list[System]:
        missing = self.missing()
        return [s for s in self.checkpoint_systems() if s.name in missing]

    # -- several replicas (GPUS=N): each scores every checkpoint on its share of the items ----
    def replica_options(self) -> dict:
        return {"engines": self.engines}  # the base taken from base_from is in the partials already

    def prepare_for_replicas(self) -> None:
        """Nothing: each replica merges the checkpoints it generates with into its own folder."""

    def merged_replica_timing(self, replicas: list[dict], wall: float) -> dict:
        """Engines started by all replicas, the slowest start, and the replicas' wall time."""
        return {
            "engine_starts": sum(r.get("engine_starts", 0) for r in replicas),
            "engine_start_seconds": max(r.get("engine_start_seconds", 0.0) for r in replicas),
            "data_parallel_replicas": len(replicas),
            "generation_wall_seconds": round(wall, 1),
        }

    # -- generate --------------------------------------------------------------------------
    def generate(self) -> dict:
        pending = self.pending()
        earlier = self.out_dir / "scores.json"
        if not pending and earlier.exists():  # all resumed: keep the timing of the run that generated
            return json.loads(earlier.read_text())["timing"]
        log.info(
            "%d of %d systems to generate (%s)",
            len(pending),
            len(self.checkpoints) + 1,
            self.engine_plan(),
        )
        started = time.time()
        timing = self.generate_shared(pending) if self.shared else self.generate_each(pending)
        timing["total_seconds"] = round(time.time() - started, 1)
        return timing

    def generate_shared(self, pending: list[System]) -> dict:
        """One engine on the base; every checkpoint's requests mixed into the same batches."""
        if not pending:
            return {"engine_starts": 0}
        started = time.time()
        engine = self.backend_cls(self.run["base_model"], self.engine_settings)
        start_s = round(time.time() - started, 1)
        started = time.time()
        for batch in chunks(range(len(self.examples)), self.request.save_every):
            jobs = [
                (s, i)
                for s in pending
                for i in batch
                if self.examples[i].id not in self.partials[s.name].done
            ]
            if not jobs:
                continue
            outs = engine.generate(
                [self.prompts[i].input_ids for _, i in jobs],
                self.max_new,
                self.stop,
                adapter=[s.adapter for s, _ in jobs],
                **self.decoding_args(),
            )
            for system in pending:
                self.partials[system.name].append(
                    {"id": self.examples[i].id, **o.to_json()}
                    for (s, i), o in zip(jobs, outs, strict=True)
                    if s is system
                )
        engine.close()
        return {
            "engine_starts": 1,
            "engine_start_seconds": start_s,
            "generation_seconds": round(time.time() - started, 1),
        }

    def engine_plan(self) -> str:
        if self.shared:
            return "one shared engine"
        return (
            "one engine, each checkpoint's weights loaded in place"
            if self.reload_in_place
            else "an engine each"
        )

    def generate_each(self, pending: list[System]) -> dict:
        """A model per system: merged into its base (merged mode), the checkpoint itself (full
        fine-tuning), or base + adapter. Where the backend takes such weights in place exactly
        (``reloads_exactly``: merged checkpoints, and full ones of a model whose embeddings are
        not tied), one engine serves them in turn; otherwise each gets its own engine."""
        timing = {
            "engine_starts": 0,
            "engine_start_seconds": 0.0,
            "weight_reloads": 0,
            "weight_reload_seconds": 0.0,
            "merge_seconds": 0.0,
            "generation_seconds": 0.0,
        }
        engine = None
        for system in pending:
            started = time.time()
            model, adapter, merged = self.model_of(system)
            timing["merge_seconds"] += time.time() - started
            engine = self.engine_for(system, model, adapter, engine, timing)
            started = time.time()
            run_system(
                System(system.name, model, adapter, system.quantized),
                self.partials[system.name],
                engine,
                adapter if self.backend_cls.adapters_per_request else None,
                self.prompts,
                self.examples,
                self.max_new,
                self.stop,
                self.request.save_every,
                self.decoding_args(),
            )
            timing["generation_seconds"] += time.time() - started
            if not self.reload_in_place:
                engine.close()
                engine = None
            if merged is not None:  # the weights are in the engine: the copy is no longer read
                shutil.rmtree(merged, ignore_errors=True)
        if engine is not None:
            engine.close()
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in timing.items()}

    def model_of(self, system: System) -> tuple[str, str | None, Path | None]:
        """The model folder and adapter ``system`` generates with, and the merged copy made for
        it (merged mode: the adapter merged into the base, removed once generated)."""
        if self.mode != "merged" or not system.adapter:
            return system.model, system.adapter, None
        merged = self.scratch_dir() / "merged" / system.name
        self.merge(Path(system.adapter), merged)
        return str(merged), None, merged

    def engine_for(
        self, system: System, model: str, adapter: str | None, engine: Backend | None, timing: dict
    ) -> Backend:
        """``engine`` with ``model``'s weights loaded into it, or a new engine where there is none."""
        started = time.time()
        if engine is not None:
            engine.load_weights_from(model)
            timing["weight_reloads"] += 1
            timing["weight_reload_seconds"] += time.time() - started
            return engine
        four_bit = quantized_from(self.run) if system.quantized else None
        settings = replace(self.engine_settings, four_bit_from=four_bit)
        per_request = self.backend_cls.adapters_per_request
        engine = self.backend_cls(model, settings, adapter=None if per_request else adapter)
        timing["engine_starts"] += 1
        timing["engine_start_seconds"] += time.time() - started
        return engine

    # -- report ----------------------------------------------------------------------------
    def score(self) -> dict:
        names = self.system_names()
        done = {n: self.partials[n].done for n in names}
        texts = {n: [done[n][ex.id]["text"] for ex in self.examples] for n in names}
        result = summarize(self.metrics, texts, [list(ex.references) for ex in self.examples])
        steps = [0, *(c.step for c in self.checkpoints)]
        losses = loss_at_steps(self.run_dir, steps)
        paths = {"base": None, **{c.name: str(c.path) for c in self.checkpoints}}
        rows = [
            {
                "name": name,
                "step": step,
                "path": paths[name],
                "scores": {k: result["scores"]["mean"][k][name] for k in result["keys"]},
                "scores_best_of_references": {
                    k: result["scores"]["best"][k][name]["mean"] for k in result["keys"]
                },
                **losses[step],
            }
            for name, step in zip(names, steps, strict=True)
        ]
        key = result["keys"][0]
        best = best_of(rows, key)
        lowest_loss = [r for r in rows if r["eval_loss"] is not None]
        return {
            "run": str(self.run_dir),
            "recipe": self.run["recipe"],
            "split": self.settings()["split"],
            "data": self.loaded.source,
            "n": result["n"],
            "keys": result["keys"],
            "labels": result["labels"],
            "chosen_by": f"{result['labels'][key]} (mean over references)",
            "scoring": result["description"],
            "checkpoints": rows,
            "best": {"name": best["name"], "step": best["step"], "path": best["path"]},
            "lowest_eval_loss": min(lowest_loss, key=lambda r: r["eval_loss"])["name"]
            if lowest_loss
            else None,
            "generation": {
                "backend": self.backend_name,
                "adapter_mode": self.mode,
                "shared_engine": self.shared,
                "max_new_tokens": self.max_new,
                "deterministic": self.request.deterministic,
            },
        }

    def report(self, timing: dict) -> list[Path]:
        scores = {**self.score(), "timing": timing}
        rows = [
            {"id": ex.id, **{n: self.partials[n].done[ex.id]["text"] for n in self.system_names()}}
            for ex in self.examples
        ]
        written = [
            atomic.write_jsonl(self.out_dir / "predictions.jsonl", rows),
            atomic.write_json(self.out_dir / "scores.json", scores),
        ]
        report = checkpoint_report(scores)
        written += [atomic.write_bytes(self.out_dir / f"{i.name}.png", i.png) for i in report.images()]
        written.append(atomic.write_text(self.out_dir / "report.md", to_markdown(report)))
        written.append(atomic.write_text(self.out_dir / "report.html", to_html(report)))
        return written


def evaluate_checkpoints(request: EvalRequest, engines: str = "auto", base_from: Sequence[Path] = ()) -> int:
    try:
        evaluation = CheckpointEvaluation(request, engines, base_from)
        evaluation.setup()
    except (EvaluationError, DataError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    try:
        timing = generate(evaluation)
    except EvaluationError as err:
        log.error("%s", err)
        return 2
    for path in evaluation.report(timing):
        print(f"wrote {path}")
    best = json.loads((evaluation.out_dir / "scores.json").read_text())["best"]
    print(f"best checkpoint: {best['name']} ({best['path']})")
    return 0


def parse_args(argv: list[str] | None) -> tuple[EvalRequest, str, list[Path]]:
    parser = argparse.ArgumentParser(description="Score every checkpoint of a run by generation + ROUGE.")
    parser.add_argument("recipe")
    add_overrides_argument(parser)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--limit", type=int, help=LIMIT_HELP)
    parser.add_argument("--split", help="default: the recipe's data.validation_split")
    parser.add_argument("--backend", help="vllm | hf")
    parser.add_argument("--adapter-mode", choices=ADAPTER_MODES)
    parser.add_argument(
        "--num-beams", type=beam_count, help="1: greedy (default: the recipe's evaluation.num_beams)"
    )
    parser.add_argument(
        "--engines",
        choices=ENGINES,
        default="auto",
        help="shared: one vLLM engine serves every checkpoint as adapters; per-checkpoint: a new "
        "engine each (auto reloads merged checkpoints into one vLLM engine)",
    )
    parser.add_argument("--data-dir", help="override where the evaluation data lives")
    parser.add_argument("--out-dir", type=Path, help=f"default: <run-dir>/{OUT_NAME}")
    parser.add_argument(
        "--base-from",
        type=Path,
        nargs="+",
        default=[],
        help="other runs' checkpoint evaluation folders: reuse the base generations of the first whose "
        "settings match",
    )
    add_deterministic_argument(parser)
    parser.add_argument("--save-every", type=int, default=64, help="items generated between two saves")
    add_gpus_argument(parser)
    args = vars(parser.parse_intermixed_args(argv))
    engines, base_from = args.pop("engines"), args.pop("base_from")
    return EvalRequest(**{**args, "overrides": tuple(args["overrides"])}), engines, base_from


def main(argv: list[str] | None = None) -> int:
    keep_log_visible()
    return evaluate_checkpoints(*parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
