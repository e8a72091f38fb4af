"""Checks that stop a bad recipe in seconds, before any model is downloaded.

Axolotl's schema checks types but silently drops unknown keys and accepts values training
cannot use (``micro_batch_size: 0``); each check here raises one :class:`RecipeError` line
naming the recipe file that sets the key (an inherited file included) and how to fix it.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

from training.recipe import RecipeError, Resolved, defining_file


def where(resolved: Resolved, key: str) -> str:
    """The file that sets ``key``, or the override that does."""
    head = key.split(".")[0]
    for text in reversed(resolved.overrides):
        given = text.partition("=")[0]
        if given in (key, head) or given.startswith(f"{key}."):
            return f"{resolved.source} (override {text})"
    return str(defining_file(resolved.source, head))


# -- values Axolotl accepts but training cannot use ------------------------------------------
def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def between(low: float, high: float, *, low_open=False, high_open=True) -> Callable[[object], bool]:
    def ok(v) -> bool:
        return _number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return ok


POSITIVE = between(0, math.inf, low_open=True)
# key: (test, what the value must be). Checked where the key is set (None means "not used").
RANGES: dict[str, tuple[Callable[[object], bool], str]] = {
    "micro_batch_size": (whole(1), "a whole number >= 1"),
    "gradient_accumulation_steps": (whole(1), "a whole number >= 1"),
    "eval_batch_size": (whole(1), "a whole number >= 1"),
    "sequence_len": (whole(16), "a whole number of tokens >= 16"),
    "max_steps": (whole(1), "a whole number >= 1 (or null: train num_epochs)"),
    "num_epochs": (POSITIVE, "a number > 0"),
    "learning_rate": (between(0, 1, low_open=True, high_open=False), "a number in (0, 1], e.g. 2e-4"),
    "warmup_ratio": (between(0, 1), "a share in [0, 1)"),
    "weight_decay": (between(0, 1, high_open=False), "a number in [0, 1]"),
    "max_grad_norm": (between(0, math.inf), "a number >= 0 (0: no clipping)"),
    "lora_r": (whole(1), "a whole number >= 1, e.g. 16"),
    "lora_alpha": (POSITIVE, "a number > 0, e.g. 2 x lora_r"),
    "lora_dropout": (between(0, 1), "a probability in [0, 1)"),
    "val_set_size": (between(0, 1), "a share of the train split in [0, 1)"),
    "save_steps": (whole(1), "a whole number of steps >= 1"),
    "eval_steps": (whole(1), "a whole number of steps >= 1"),
    "logging_steps": (whole(1), "a whole number of steps >= 1"),
    "save_total_limit": (whole(1), "a whole number >= 1"),
}


class BlockProblem(ValueError):
    """What the check of a block another package owns found: the dotted key at fault and a
    one-line problem that starts with it (``evaluation.backend: 'tgi' is not one of ...``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


# The check of a project block that another package owns (eval checks ``evaluation:``): it gets
# the block's resolved values and raises BlockProblem. The entry point that composes the two
# sides passes it in (scripts/train.py), so training never imports what it does not own.
BlockCheck = Callable[[dict], None]


def check_values(resolved: Resolved, block_checks: Mapping[str, BlockCheck] = MappingProxyType({})) -> None:
    """Sizes, ranks, rates and probabilities inside the ranges training can use; the names
    that pick components; and each block another package checks itself."""
    config = resolved.config
    for key, (ok, what) in RANGES.items():
        value = config.get(key)
        if value is not None and not ok(value):
            raise RecipeError(f"{where(resolved, key)}: {key}: {value!r} cannot be used: it must be {what}")
    for block, check in block_checks.items():
        try:
            check(resolved.project[block])
        except BlockProblem as problem:
            raise RecipeError(f"{where(resolved, problem.key)}: {problem}") from None
    check_choices(resolved)
    check_data_block(resolved)
    check_runner_keys(resolved)
    check_memory_mode(resolved)


def check_memory_mode(resolved: Resolved) -> None:
    """``gradient_checkpointing: auto`` needs the GPU size from which to train without it; the
    memory block's sizes are GiB > 0."""
    mode = resolved.config.get("gradient_checkpointing")
    threshold = resolved.project["memory"]["checkpointing_off_from_gib"]
    if mode not in (None, True, False, "auto"):
        raise RecipeError(
            f"{where(resolved, 'gradient_checkpointing')}: gradient_checkpointing: {mode!r} is not true, false or auto"
        )
    for key in ("checkpointing_off_from_gib", "nf4_round_trip_from_gib"):
        gib = resolved.project["memory"][key]
        if gib is not None and not POSITIVE(gib):
            raise RecipeError(
                f"{where(resolved, 'memory')}: memory.{key}: {gib!r} must be a number of GiB > 0"
            )
    if mode == "auto" and threshold is None:
        raise RecipeError(
            f"{where(resolved, 'gradient_checkpointing')}: gradient_checkpointing: auto needs "
            "memory.checkpointing_off_from_gib (the GPU size in GiB from which to train without it)"
        )


def require_choice(key: str, value, known) -> None:
    """``value`` is one of the ``known`` names, or a BlockProblem that suggests the closest."""
    if value not in known:
        hint = difflib.get_close_matches(str(value), list(known), n=1)
        raise BlockProblem(
            key,
            f"{key}: {value!r} is not one of {', '.join(known)}"
            + (f" (did you mean '{hint[0]}'?)" if hint else ""),
        )


def check_choices(resolved: Resolved) -> None:
    """Names that pick a training-side component (trainer, corpus, format) exist and fit."""
    from datasets_fmt.prompts import FORMATS
    from datasets_fmt.sources import CORPUS_NAMES
    from training.launch import TRAINERS

    data, trainer = resolved.project["data"], resolved.project["trainer"]
    for key, value, known in (
        ("trainer", trainer, TRAINERS),
        ("data.corpus", data["corpus"], CORPUS_NAMES),
        ("data.format", data["format"], FORMATS),
    ):
        try:
            require_choice(key, value, known)
        except BlockProblem as problem:
            raise RecipeError(f"{where(resolved, key)}: {problem}") from None
    if FORMATS[data["format"]].is_seq2seq != (trainer == "seq2seq"):
        raise RecipeError(
            f"{where(resolved, 'trainer')}: trainer '{trainer}' with data.format "
            f"'{data['format']}': encoder-decoder models use trainer: seq2seq with format: seq2seq, "
            "decoder-only models trainer: axolotl with another format"
        )


def check_data_block(resolved: Resolved) -> None:
    """Your own data's column map and location, and a cut into splits that serves every split
    the run asks for (datasets_fmt/spec.py says what the block may hold)."""
    from datasets_fmt.spec import data_block_problem

    found = data_block_problem(resolved.project["data"], resolved.project["evaluation"]["split"])
    if found:
        key, problem = found
        raise RecipeError(f"{where(resolved, key)}: {problem}")


def axolotl_datasets_instead(entries) -> str:
    """The ``data:`` block that says what a recipe's own Axolotl ``datasets:`` entry says."""
    first = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
    fields = first.get("type") if isinstance(first.get("type"), dict) else {}
    if "field_instruction" in fields:
        roles = {"instruction": "field_instruction", "input": "field_input", "output": "field_output"}
    else:
        roles = {"dialogue": "field_input", "summary": "field_output"}
    columns = ", ".join(f"{role}: {fields.get(field) or '<column>'}" for role, field in roles.items())
    return f"data: {{corpus: custom, location: {first.get('path') or '<file or hub id>'}, column_map: {{{columns}}}}}"


# keys the runner writes into a run's config: a recipe that sets them would lose them silently
RUNNER_KEYS: dict[str, Callable[[object], str]] = {
    "datasets": lambda given: (
        f"describe the data in the recipe's data: block instead, e.g. {axolotl_datasets_instead(given)} (README: Data)"
    ),
    "test_datasets": lambda given: (
        "name the held-out split in data.validation_split instead (or cut one file with data.split_fractions; README: Data)"
    ),
    "output_dir": lambda given: (
        "choose the run directory with RUN_DIR=... (--run-dir) instead; the adapter goes to <run dir>/adapter"
    ),
    "dataset_prepared_path": lambda given: (
        "choose the run directory with RUN_DIR=... (--run-dir) instead; prepared data goes to <run dir>/prepared"
    ),
}


def check_runner_keys(resolved: Resolved) -> None:
    """Refuse the Axolotl keys the runner sets itself, saying what to write instead."""
    for key, instead in RUNNER_KEYS.items():
        given = resolved.config.get(key)
        if given is not None:
            raise RecipeError(
                f"{where(resolved, key)}: {key}: the runner sets it for every run and would replace yours: {instead(given)}"
            )


# -- keys Axolotl would drop, and its own schema ---------------------------------------------
def unknown_keys(config: dict) -> list[str]:
    """Keys Axolotl's schema would silently drop (misspellings), with a suggestion each."""
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset

    if config.get("plugins"):  # plugins (Liger, ...) add their own keys to the schema
        from axolotl.integrations.config import merge_input_args
        from axolotl.utils.config import prepare_plugins
        from axolotl.utils.dict import DictDefault

        try:
            prepare_plugins(DictDefault(copy.deepcopy(config)))
        except (ImportError, AttributeError) as err:
            raise RecipeError(f"plugins: cannot load {config['plugins']}: {err}") from None
        _, AxolotlInputConfig = merge_input_args()  # noqa: N806 (a class)

    def fields(model) -> set[str]:
        names = set(model.model_fields)
        names |= {f.alias for f in model.model_fields.values() if f.alias}
        return names

    problems = []
    for scope, keys, known in [("", config.keys(), fields(AxolotlInputConfig))] + [
        (f"datasets[{i}].", ds.keys(), fields(SFTDataset))
        for i, ds in enumerate(config.get("datasets") or [])
        if isinstance(ds, dict)
    ]:
        for key in keys:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                problems.append(f"{scope}{key}" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    return problems


def schema_problem(err: Exception) -> tuple[str | None, str]:
    """The first key Axolotl's schema complains about, and the complaint on one line."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()))
        return (key or None), f"{key}: {first.get('msg')} (got {first.get('input')!r})"
    return None, " ".join(str(err).split())


def validate(resolved: Resolved) -> None:
    """Axolotl's own schema plus the unknown-key check it lacks. Loads no model."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    bad = unknown_keys(resolved.config)
    if bad:
        raise RecipeError(
            f"{resolved.source}: unknown key(s) that Axolotl would silently ignore: {'; '.join(bad)}"
        )
    try:
        validate_config(DictDefault(copy.deepcopy(resolved.config)))
    except Exception as err:  # pydantic ValidationError or Axolotl's own ValueErrors
        key, problem = schema_problem(err)
        place = where(resolved, key.split(".")[0]) if key else str(resolved.source)
        raise RecipeError(f"{place}: Axolotl rejects this config: {problem}") from None


# -- checks that need the model's config, not its weights -------------------------------------
def check_against_model(resolved: Resolved, cuda_bf16: bool | None) -> None:
    """Fail in the first second instead of after downloading and quantizing a multi-GB model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = resolved.config
    if not config.get("base_model"):
        raise RecipeError(
            f"{where(resolved, 'base_model')}: no base_model: name a hub id or a local model folder"
        )
    if config.get("adapter") == "qlora" and not config.get("load_in_4bit"):
        raise RecipeError(
            f"{where(resolved, 'adapter')}: adapter: qlora needs load_in_4bit: true (inherit _qlora.yml), or use adapter: lora"
        )
    if config.get("bf16") is True and cuda_bf16 is False:
        raise RecipeError(
            f"{where(resolved, 'bf16')}: bf16: true, but this GPU has no bf16: set bf16: false and fp16: true (or bf16: auto)"
        )
    try:
        model_config = AutoConfig.from_pretrained(config.get("base_model_config") or config["base_model"])
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise RecipeError(
            f"{where(resolved, 'base_model')}: cannot read the config of base_model {config['base_model']!r}: {first}"
        ) from None
    max_positions = getattr(model_config, "max_position_embeddings", None)
    if max_positions and config.get("sequence_len", 0) > max_positions:
        raise RecipeError(
            f"{where(resolved, 'sequence_len')}: sequence_len {config['sequence_len']} is above the model's maximum {max_positions} positions"
        )
    targets = config.get("lora_target_modules")
    if config.get("adapter") and targets and not config.get("lora_target_linear"):
        encoder_decoder = getattr(model_config, "is_encoder_decoder", False)
        auto = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
        with torch.device("meta"):
            model = auto.from_config(model_config)
        linear = {
            name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)
        }
        missing = [t for t in ([targets] if isinstance(targets, str) else targets) if t not in linear]
        if missing:
            raise RecipeError(
                f"{where(resolved, 'lora_target_modules')}: lora_target_modules {missing} do not exist in {config['base_model']} "
                f"({model_config.model_type}); its linear layers are: {', '.join(sorted(linear))}"
            )
