"""Evaluate a trained run: base vs fine-tuned on the recipe's evaluation split.

Prompts come from the same code as training (:mod:`datasets_fmt.prompts`). Generation is
greedy or beam search (``evaluation.num_beams``), batched by the chosen backend, stops on
the model's own stop tokens, and is saved as it goes: an interrupted evaluation resumes
without regenerating, and a change of settings discards what was generated under the old
ones. Writes into ``<run>/eval/``:
``predictions.jsonl``, ``metrics.json``, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from tqdm import tqdm

from datasets_fmt import atomic
from datasets_fmt.prompts import Encoded, get_format
from datasets_fmt.records import DataError, Example
from datasets_fmt.sources import is_hub_id, load_data
from datasets_fmt.spec import DataSpec
from datasets_fmt.splits import check_same_split
from eval.backends import (
    ADAPTER_MODES,
    BATCH_INVARIANT,
    DETERMINISTIC_MODES,
    SEQUENTIAL,
    Backend,
    EngineSettings,
    adapter_rank,
    chunks,
    engine_context,
    get_backend,
    has_cuda,
    max_new_tokens_for,
    reloads_exactly,
    stop_token_ids,
)
from eval.checkpoint_paths import CheckpointError, checkpoint_path
from eval.external import prepare_external_run
from eval.metrics import check_sources, get_metrics, get_source_checks, summarize
from eval.model_card import write_model_card
from eval.predictions import PartialPredictions
from eval.recipe_block import check_evaluation_block
from eval.report import write_report
from training.merge import merge_adapter
from training.paths import FINISHED, MERGE_CHECK, MERGED_DIR, default_run_dir
from training.recipe import parse_override, project_defaults
from training.run_record import is_qlora, quantized_from, trained_every_weight

log = logging.getLogger("evaluate")
SYSTEMS = ("base", "finetuned")
SUBSET_SEED = 0
LIMIT_HELP = "a fixed seeded sample of N items of the split (the same N items for every command and run)"
ENGINE_ARGS = "engine_args"  # evaluation.engine_args: more vLLM engine arguments
FULL = "full"  # the adapter mode of a run that trained every weight: its own model, no adapter


@dataclass
class EvalRequest:
    recipe: str
    run_dir: Path | None = None
    limit: int | None = None
    split: str | None = None
    backend: str | None = None
    adapter_mode: str | None = None
    num_beams: int | None = None
    data_dir: str | None = None
    out_dir: Path | None = None
    deterministic: str | None = None  # DETERMINISTIC=: one of DETERMINISTIC_MODES (eval/backends)
    save_every: int = 64  # items generated between two saves of the partial predictions
    checkpoint: str | None = None  # best | <step>: a saved checkpoint instead of the final adapter
    overrides: tuple[str, ...] = ()  # OVERRIDES: evaluation.KEY=VALUE, over what the run recorded
    adapter: str | None = None  # ADAPTER=: an adapter trained elsewhere (folder or Hub id), eval/external.py
    model: str | None = None  # MODEL=: its base, or alone a fully fine-tuned model
    gpus: int = 1  # GPUS=: engine replicas, one per GPU, each on a share of the items (eval/data_parallel.py)


@dataclass(frozen=True)
class System:
    """One side of the comparison: the model folder it loads, the adapter it applies, and
    whether the model is loaded in 4-bit as QLoRA trained on it."""

    name: str
    model: str
    adapter: str | None
    quantized: bool = False


class EvaluationError(ValueError):
    """An evaluation that cannot start: says what is missing and how to get it."""


def progress(total: int, what: str) -> tqdm:
    """Items done, rate and time left on stderr, so a long generation is never silent."""
    return tqdm(total=total, desc=what, unit="item", mininterval=5, file=sys.stderr, dynamic_ncols=True)


def run_system(
    system: System,
    partial: PartialPredictions,
    backend: Backend,
    per_request_adapter: str | None,
    prompts: list[Encoded],
    examples: list[Example],
    max_new: int,
    stop: list[int],
    save_every: int,
    decoding: dict | None = None,
) -> dict:
    """Generate what ``partial`` does not hold yet for one system, saving every ``save_every``
    items; return its throughput."""
    todo = [i for i, ex in enumerate(examples) if ex.id not in partial.done]
    log.info(
        "%s: generating %d of %d (%d already done)",
        system.name,
        len(todo),
        len(examples),
        len(examples) - len(todo),
    )
    started, tokens = time.time(), 0
    with progress(len(todo), f"{system.name}: generating") as bar:
        for batch in chunks(todo, save_every):
            outs = backend.generate(
                [prompts[i].input_ids for i in batch],
                max_new,
                stop,
                adapter=per_request_adapter,
                **(decoding or {}),
            )
            tokens += sum(o.output_tokens for o in outs)
            partial.append({"id": examples[i].id, **o.to_json()} for i, o in zip(batch, outs, strict=True))
            bar.update(len(batch))
    seconds = max(time.time() - started, 1e-9)
    return {
        "items": len(todo),
        "seconds": round(seconds, 2),
        "prompts_per_s": round(len(todo) / seconds, 3),
        "output_tokens_per_s": round(tokens / seconds, 1),
    }


def evaluation_overrides(overrides: tuple[str, ...]) -> dict:
    """OVERRIDES for the evaluating commands: keys of the recipe's ``evaluation:`` block only,
    checked like the recipe's own; anything else changes training and needs a new run."""
    chosen = {}
    for text in overrides:
        keys, value = parse_override(text)
        if (
            keys[:2] == ["evaluation", ENGINE_ARGS] and len(keys) == 3
        ):  # one vLLM argument, beside the recipe's
            chosen.setdefault(ENGINE_ARGS, {})[keys[2]] = value
            continue
        if keys[0] != "evaluation" or len(keys) != 2:
            raise EvaluationError(
                f"OVERRIDES: '{text}' is not an evaluation.KEY=VALUE setting; evaluating reads only the "
                "recipe's evaluation: block (e.g. evaluation.max_new_tokens=64, evaluation.engine_args.enforce_eager=true). "
                "A training key needs a new run: make train OVERRIDES=..."
            )
        chosen[keys[1]] = value
    if chosen:
        try:
            check_evaluation_block({**project_defaults()["evaluation"], **chosen})
        except ValueError as err:
            raise EvaluationError(f"OVERRIDES: {err}") from None
    return chosen


def engine_args_of(run: dict, given: dict | None) -> dict:
    """The run's vLLM engine arguments with those OVERRIDES gave one by one: they join the
    recipe's instead of replacing them."""
    return {**(run["evaluation"].get(ENGINE_ARGS) or {}), **(given or {})}


def seeded_subset(examples: list[Example], limit: int | None) -> list[Example]:
    """LIMIT=N, for every command: a fixed seeded sample of N items, in the split's order.
    Not the first N: a split's order can follow its source (topics, dates), and every command
    and run given the same N scores the same items."""
    if not limit or limit >= len(examples):
        return examples
    keep = sorted(random.Random(SUBSET_SEED).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


class Evaluation:
    """setup (run, data, prompts, settings) -> generate (per system, resumable) -> report."""

    def __init__(self, request: EvalRequest):
        self.started = time.time()  # the report gives the whole evaluation's wall time beside the rates
        self.request = request
        self.run_dir = (request.run_dir or default_run_dir(request.recipe)).resolve()
        if not (self.run_dir / FINISHED).exists():
            raise EvaluationError(
                f"{self.run_dir} holds no finished training run: run `make train RECIPE={request.recipe}` first"
            )
        self.run = yaml.safe_load((self.run_dir / "run.yml").read_text())
        self.config = yaml.safe_load((self.run_dir / "config.yml").read_text())
        # a checkpoint (CHECKPOINT=best|<step>) is evaluated like the final adapter, apart
        self.checkpoint = checkpoint_path(self.run_dir, request.checkpoint) if request.checkpoint else None
        # what training wrote: an adapter, or the whole model (full fine-tuning, `adapter: null`)
        self.trained = self.checkpoint or self.run_dir / "adapter"
        suffix = f"-{self.checkpoint.name}" if self.checkpoint else ""
        self.out_dir = (request.out_dir or self.run_dir / f"eval{suffix}").resolve()
        self.merged_dir = self.run_dir / f"{MERGED_DIR}{suffix}"

    # -- setup -----------------------------------------------------------------------------
    def settings(self) -> dict:
        given = {
            "limit": self.request.limit,
            "split": self.request.split,
            "backend": self.request.backend,
            "adapter_mode": self.request.adapter_mode,
            "num_beams": self.request.num_beams,
        }
        # defaults first: a run recorded before a setting existed still evaluates
        defaults = project_defaults()["evaluation"]
        overridden = evaluation_overrides(self.request.overrides)
        chosen = {**defaults, **self.run["evaluation"], **overridden}
        chosen[ENGINE_ARGS] = engine_args_of(self.run, overridden.get(ENGINE_ARGS))
        return {**chosen, **{k: v for k, v in given.items() if v is not None}}

    def setup(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        s = self.settings()
        data = self.data_block()
        base = self.run["base_model"]
        self.loaded = load_data(DataSpec.from_block(data), s["split"])
        check_same_split(self.run.get("data_split"), self.loaded.split_record)
        self.examples = self.select(self.loaded.examples, s["limit"])
        self.fmt = get_format(data["format"], AutoTokenizer.from_pretrained(base), data["instruction"])
        refs = [
            len(self.fmt.text_ids(r)) + len(self.fmt.stop_token_ids)
            for ex in self.examples
            for r in ex.references
        ]
        self.max_new = s["max_new_tokens"] or max_new_tokens_for(refs)
        self.num_beams = s["num_beams"]
        self.length_penalty = float(s["length_penalty"])
        model_max = getattr(AutoConfig.from_pretrained(base), "max_position_embeddings", None) or 4096
        context = min(model_max, self.config["sequence_len"] + self.max_new)
        self.prompts = [self.fmt.encode_prompt(ex, context - self.max_new) for ex in self.examples]
        self.max_model_len = engine_context(context, model_max)
        self.stop = stop_token_ids(base, self.fmt.stop_token_ids)
        self.backend_name = s["backend"]
        if self.fmt.is_seq2seq and not get_backend(self.backend_name).serves_seq2seq:
            log.info("%s cannot serve an encoder-decoder: using the hf backend", self.backend_name)
            self.backend_name = "hf"
        self.backend_cls = get_backend(self.backend_name)
        if self.request.deterministic == BATCH_INVARIANT:
            if self.backend_name != "vllm":
                raise EvaluationError(
                    f"DETERMINISTIC={BATCH_INVARIANT} is vLLM's; the {self.backend_name} backend is deterministic as it is"
                )
            from eval.backends.vllm import check_batch_invariant

            check_batch_invariant()
        self.mode = self.adapter_mode(s["adapter_mode"])
        self.engine_settings = EngineSettings(
            max_model_len=self.max_model_len,
            seq2seq=self.fmt.is_seq2seq,
            batch_size=s["batch_size"],
            max_lora_rank=adapter_rank(self.trained)
            if self.mode == "lora" and self.backend_cls.adapters_per_request
            else None,
            # generate_system sends at most save_every prompts at once, each with its beams
            max_batch=min(len(self.prompts), self.request.save_every) * self.num_beams,
            deterministic=self.request.deterministic,
            tokenizer=base,
            engine_args=s[ENGINE_ARGS],
        )
        if s[ENGINE_ARGS] and self.backend_name == "vllm":
            from eval.backends.vllm import check_engine_args

            check_engine_args(s[ENGINE_ARGS])
        self.metrics = get_metrics(s["metrics"])
        self.source_checks = get_source_checks(s["source_checks"])
        self.partials = self.open_partials()
        log.info(
            "%d items of %s; max_new_tokens=%d; %s; backend=%s; adapter=%s; stop ids %s",
            len(self.examples),
            self.loaded.source,
            self.max_new,
            self.decoding(),
            self.backend_name,
            self.mode,
            self.stop,
        )

    def data_block(self) -> dict:
        """The data: block training used (defaults first, as for settings), the location
        replaced by --data-dir: the same loader then gives the same split."""
        data = {**project_defaults()["data"], **self.run["data"]}
        given = self.request.data_dir
        if given:
            data["location"] = given if is_hub_id(given) else str(Path(given).resolve())
        return data

    def adapter_mode(self, asked: str) -> str:
        """How the fine-tuned side loads. QLoRA: merged into the NF4-dequantized base, what
        training computed (an adapter on the original base scored lower: results/evaluation.md). LoRA:
        vLLM on CPU generates with a merged model ~5x faster than base + LoRA; elsewhere the adapter
        stays apart, except DETERMINISTIC=1 on a GPU: vLLM's LoRA kernels changed 38 of 100 texts
        between two one-sequence-at-a-time runs on an H100, the merged weights none
        (results/evaluation.md). Full fine-tuning: the trained model itself."""
        if trained_every_weight(self.run):
            if asked != "auto":
                raise EvaluationError(
                    f"adapter mode '{asked}': {self.run['recipe']} trained every weight (adapter: null), so "
                    "there is no adapter to apply or merge; leave ADAPTER_MODE unset"
                )
            return FULL
        sequential_gpu = (
            self.request.deterministic == SEQUENTIAL and self.backend_name == "vllm" and has_cuda()
        )
        if asked == "lora" and sequential_gpu:
            log.warning(
                "DETERMINISTIC=1 with ADAPTER_MODE=lora on a GPU: vLLM's LoRA kernels can change texts between "
                "two identical runs (38 of 100 on an H100); leave ADAPTER_MODE out to merge, whose texts matched"
            )
        if asked != "auto":
            return asked
        on_cpu_vllm = self.backend_name == "vllm" and not has_cuda()
        return "merged" if is_qlora(self.run) or on_cpu_vllm or sequential_gpu else "lora"

    def decoding(self) -> str:
        return (
            "greedy"
            if self.num_beams == 1
            else f"beam search, {self.num_beams} beams, length penalty {self.length_penalty}"
        )

    def decoding_args(self) -> dict:
        """The backends' decoding arguments; greedy decoding has no length penalty."""
        if self.num_beams == 1:
            return {"num_beams": 1}
        return {"num_beams": self.num_beams, "length_penalty": self.length_penalty}

    def select(self, examples: list[Example], limit: int | None) -> list[Example]:
        return seeded_subset(examples, limit)

    def fingerprint(self) -> dict:
        """Everything that changes the generated text: partials made under others are stale."""
        return {
            "base_model": self.run["base_model"],
            "adapter_mode": self.mode,
            "backend": self.backend_name,
            "max_new_tokens": self.max_new,
            "num_beams": self.num_beams,
            **self.length_penalty_entry(),  # only when it changes beams: older evaluations keep theirs
            "format": self.run["data"]["format"],
            "data": self.loaded.source,
            "deterministic": self.request.deterministic or False,
            **self.engine_args_entry(),  # only when set: older evaluations keep their generations
            "adapter_trained": (self.run_dir / FINISHED).read_text().strip(),
            "adapter": str(self.trained),
        }

    def missing(self) -> dict[str, int]:
        """Per system, how many items have no generation yet (systems with none left out)."""
        counts = {
            name: sum(ex.id not in partial.done for ex in self.examples)
            for name, partial in self.partials.items()
        }
        return {name: n for name, n in counts.items() if n}

    def engine_args_entry(self) -> dict:
        """``{"engine_args": ...}`` when the recipe or OVERRIDES gave any, else nothing."""
        given = self.engine_settings.engine_args
        return {ENGINE_ARGS: given} if given else {}

    def length_penalty_entry(self) -> dict:
        """``{"length_penalty": ...}`` when beam search runs with another than the default."""
        default = project_defaults()["evaluation"]["length_penalty"]
        changed = self.num_beams > 1 and self.length_penalty != default
        return {"length_penalty": self.length_penalty} if changed else {}

    def open_partials(self) -> dict[str, PartialPredictions]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.out_dir / "settings.json"
        if settings_file.exists() and json.loads(settings_file.read_text()) != self.fingerprint():
            log.info(
                "generation settings changed since the last evaluation in %s: starting over", self.out_dir
            )
            for stale in self.out_dir.glob("*.partial.jsonl"):
                stale.unlink()
        atomic.write_json(settings_file, self.fingerprint())
        return {
            name: PartialPredictions(self.out_dir / f"{name}.partial.jsonl") for name in self.system_names()
        }

    def system_names(self) -> list[str]:
        return list(SYSTEMS)

    def systems(self) -> list[System]:
        base = self.run["base_model"]
        if self.mode == FULL:
            return [System("base", base, None), System("finetuned", str(self.trained), None)]
        if self.mode == "merged":
            return [System("base", base, None), System("finetuned", str(self.merged_model()), None)]
        if self.mode == "quantized" and not is_qlora(self.run):
            raise EvaluationError(
                f"adapter mode 'quantized' is for QLoRA runs; {self.run['recipe']} trained {self.run.get('adapter')}"
            )
        quantized = self.mode == "quantized"
        return [System("base", base, None), System("finetuned", base, str(self.trained), quantized)]

    # -- several replicas (GPUS=N, eval/data_parallel.py) ----------------------------------------
    def replica_options(self) -> dict:
        """The keyword arguments a replica's evaluation is built with beside the request."""
        return {}

    def prepare_for_replicas(self) -> None:
        """Make once what every replica would otherwise make at the same time: the merged model."""
        self.systems()

    def scratch_dir(self) -> Path:
        """Where the evaluation makes files it removes once used (a replica: a folder of its own)."""
        return self.out_dir

    def merged_replica_timing(self, replicas: list[dict], wall: float) -> dict:
        from eval.data_parallel import merged_timing  # it builds on this module

        return merged_timing(replicas, wall)

    def merged_model(self) -> Path:
        if not (self.merged_dir / MERGE_CHECK).exists():
            self.merge(self.trained, self.merged_dir)
        return self.merged_dir

    def merge(self, adapter: Path, out: Path) -> None:
        """Merge ``adapter`` into the run's base as training saw it (QLoRA: the NF4 round trip)."""
        log.info("merging %s into %s", adapter, out)
        merge_adapter(self.run["base_model"], adapter, out, is_qlora(self.run), quantized_from(self.run))

    # -- generate --------------------------------------------------------------------------
    def generate(self) -> dict:
        """Generate every missing item with one engine where it can serve both sides: adapters
        per request, or the fine-tuned weights loaded into the base's engine in place (merged
        or full fine-tune, where that is exact); else an engine per model. Return throughput,
        engine start (or weight load) times and how many engines started."""
        throughput, started_in = {}, {}
        engine, engine_key, starts = None, None, 0
        per_request = self.backend_cls.adapters_per_request
        reload = self.mode in ("merged", FULL) and reloads_exactly(
            self.backend_cls, self.run["base_model"], self.mode == FULL
        )
        for system in self.systems():
            if system.name not in self.missing():
                log.info("%s: all %d items already generated (resumed)", system.name, len(self.examples))
                continue
            key = (system.model, None if per_request else system.adapter, system.quantized)
            started = time.time()
            if key != engine_key and engine is not None and reload:
                log.info("%s: loading %s's weights into the running engine", system.name, system.model)
                engine.load_weights_from(system.model)
            elif key != engine_key:
                if engine is not None:
                    engine.close()
                four_bit = quantized_from(self.run) if system.quantized else None
                settings = replace(self.engine_settings, four_bit_from=four_bit)
                engine = self.backend_cls(system.model, settings, adapter=key[1])
                starts += 1
            engine_key = key
            started_in[system.name] = round(time.time() - started, 1)
            throughput[system.name] = run_system(
                system,
                self.partials[system.name],
                engine,
                system.adapter if per_request else None,
                self.prompts,
                self.examples,
                self.max_new,
                self.stop,
                self.request.save_every,
                self.decoding_args(),
            )
        if engine is not None:
            engine.close()
        return {"throughput": throughput, "engine_start_seconds": started_in, "engine_starts": starts}

    # -- report ----------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        done = {name: self.partials[name].done for name in SYSTEMS}
        return [
            {
                "id": ex.id,
                "dialogue": ex.source,
                "references": list(ex.references),
                "prompt_tokens": p.prompt_len,
                "truncated_tokens": p.truncated_tokens,
                **{name: {k: v for k, v in done[name][ex.id].items() if k != "id"} for name in SYSTEMS},
            }
            for ex, p in zip(self.examples, self.prompts, strict=True)
        ]

    def stability_note(self) -> str:
        if self.request.deterministic == BATCH_INVARIANT:
            return (
                "Nearly deterministic: vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1, beta) make a "
                "text all but independent of which requests shared its batches. Measured on an H100 (vLLM "
                "0.26, 500 prompts): two identical runs still differed in 1-2% of the texts, the adapter as "
                "LoRA or merged, against 7-35% without them. DETERMINISTIC=1 generates one sequence at a time "
                "for identical text."
            )
        if self.backend_name == "vllm" and self.request.deterministic and has_cuda() and self.mode == "lora":
            return (
                "Not deterministic: one sequence at a time, but the adapter as a LoRA module, whose GPU "
                "kernels changed 38 of 100 texts between two identical runs on an H100 (vLLM 0.26). Leave "
                "ADAPTER_MODE out: DETERMINISTIC=1 then merges the adapter, and two such runs matched."
            )
        if self.backend_name != "vllm" or self.request.deterministic:
            return (
                "Deterministic by design on one machine: the same command forms the same batches, so the "
                "same text (two identical DETERMINISTIC=1 runs matched on the CPU, and on an H100 with the "
                "adapter merged, which DETERMINISTIC=1 does there). Another machine's GPU kernels can change "
                "some texts: 207 of 500 greedy base texts on DialogSum test differed between two H100s with "
                "BACKEND=hf."
            )
        return (
            "vLLM batches requests continuously, and the floating-point sums of a step depend on which "
            "requests share it: a share of greedy outputs can change between two identical runs (see the "
            "results page for the measured share). Scores move far less than the intervals above. "
            "DETERMINISTIC=1 generates one sequence at a time (on a GPU with the adapter merged) for "
            f"identical text; on an H100 or H200, DETERMINISTIC={BATCH_INVARIANT} keeps full batching with "
            "vLLM's batch-invariant kernels and leaves 1-2% of the texts changing."
        )

    def report(self, timing: dict) -> list[Path]:
        rows = self.rows()
        atomic.write_jsonl(self.out_dir / "predictions.jsonl", rows)
        texts = {name: [r[name]["text"] for r in rows] for name in SYSTEMS}
        result = summarize(self.metrics, texts, [r["references"] for r in rows])
        checks = check_sources(self.source_checks, texts, [r["dialogue"] for r in rows])
        generation = {
            "backend": self.backend_name,
            "adapter_mode": self.mode,
            "checkpoint": self.checkpoint.name if self.checkpoint else "final",
            "max_new_tokens": self.max_new,
            "max_model_len": self.max_model_len,
            "stop_token_ids": self.stop,
            "decoding": self.decoding(),
            "deterministic": self.request.deterministic,
            **self.engine_args_entry(),
            **timing,
            "stability": self.stability_note(),
            "prompt_format": self.run["data"]["format"],
            "example_prompt": self.fmt.prompt_text(self.examples[0]),
            "evaluation_wall_seconds": round(time.time() - self.started, 1),
        }
        paths, metrics = write_report(
            self.out_dir,
            self.run_dir,
            self.run,
            self.config,
            rows,
            result,
            generation,
            self.loaded.source,
            checks,
        )
        # weights trained elsewhere keep their folder as it is: their card goes beside the report
        card_dir = self.out_dir if self.run.get("external") else self.trained
        return [*paths, write_model_card(card_dir, self.run, self.config, metrics)]


def generate(evaluation: Evaluation) -> dict:
    """One engine, or with GPUS=N one replica per GPU (eval/data_parallel.py)."""
    if evaluation.request.gpus <= 1:
        return evaluation.generate()
    from eval import data_parallel  # it builds on this module

    return data_parallel.generate(evaluation, evaluation.request.gpus, has_cuda())


def evaluate(request: EvalRequest) -> int:
    try:
        if request.adapter or request.model:
            run_dir = prepare_external_run(
                request.recipe, request.adapter, request.model, request.run_dir, request.overrides
            )
            request = replace(request, run_dir=run_dir, overrides=())
        evaluation = Evaluation(request)
        evaluation.setup()
    except (EvaluationError, CheckpointError, DataError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    try:
        timing = generate(evaluation)
    except EvaluationError as err:
        log.error("%s", err)
        return 2
    for path in evaluation.report(timing):
        print(f"wrote {path}")
    return 0


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="evaluation.KEY=VALUE",
        help="the recipe's evaluation settings for this evaluation (OVERRIDES=)",
    )


def add_gpus_argument(parser: argparse.ArgumentParser) -> None:
    """GPUS=: engine replicas (eval/data_parallel.py), for make eval and eval-checkpoints."""
    parser.add_argument(
        "--gpus", type=gpu_count, default=1, help="engine replicas, one per GPU, each on a share of the items"
    )


def add_deterministic_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deterministic",
        nargs="?",
        const=SEQUENTIAL,
        choices=DETERMINISTIC_MODES,
        help=f"text independent of batching: {SEQUENTIAL} (the default; one sequence at a time, slower) "
        f"or {BATCH_INVARIANT} (vLLM's batch-invariant kernels; H100/H200)",
    )


def at_least_one(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= 1, else "'<text>' is not <what>"."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return int(text)

    return parse


beam_count = at_least_one("a whole number >= 1 (1: greedy)")  # --num-beams
gpu_count = at_least_one("a whole number of GPUs >= 1")  # --gpus


def parse_args(argv: list[str] | None) -> EvalRequest:
    parser = argparse.ArgumentParser(description="Evaluate base vs fine-tuned for a trained run.")
    parser.add_argument("recipe")
    add_overrides_argument(parser)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--limit", type=int, help=LIMIT_HELP)
    parser.add_argument("--split")
    parser.add_argument(
        "--num-beams", type=beam_count, help="1: greedy (default: the recipe's evaluation.num_beams)"
    )
    parser.add_argument("--backend", help="vllm | hf")
    parser.add_argument(
        "--adapter-mode", choices=ADAPTER_MODES, help="quantized: QLoRA's 4-bit base + adapter (hf)"
    )
    parser.add_argument(
        "--adapter", help="an adapter trained elsewhere: a folder or a Hub id (no training run)"
    )
    parser.add_argument(
        "--model", help="with --adapter its base; alone a fully fine-tuned model (folder or Hub id)"
    )
    parser.add_argument("--data-dir", help="override where the evaluation data lives")
    parser.add_argument("--out-dir", type=Path, help="default: <run-dir>/eval")
    add_deterministic_argument(parser)
    parser.add_argument("--save-every", type=int, default=64, help="items generated between two saves")
    add_gpus_argument(parser)
    parser.add_argument(
        "--checkpoint", help="best (by validation ROUGE: make eval-checkpoints) or a step: that checkpoint"
    )
    args = vars(parser.parse_intermixed_args(argv))
    return EvalRequest(**{**args, "overrides": tuple(args["overrides"])})


def keep_log_visible() -> None:
    """vLLM reconfigures the root logger; give ours its own handler."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None) -> int:
    keep_log_visible()
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
