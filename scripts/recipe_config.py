"""Resolve a recipe into the exact Axolotl config a run uses, and check it strictly.

A recipe is an Axolotl YAML file plus two blocks this project owns:

- ``inherit:`` a recipe file, or a list of them merged in order (relative to this one),
  whose keys this one overrides;
- ``data:`` which corpus, splits and prompt format to use (``datasets_fmt``);
- ``evaluation:`` how ``make eval`` generates (split, max_new_tokens, ...).

``key=value`` overrides (dotted keys reach into blocks: ``data.corpus=samsum``) are applied
last; values are parsed as YAML (``max_steps=10`` is an int). ``${VAR}`` and
``${VAR:-default}`` in strings are expanded from the environment.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
PROJECT_BLOCKS = ("data", "evaluation")
DATA_DEFAULTS = {
    "corpus": "dialogsum",
    "format": "chat",
    "train_split": "train",
    "validation_split": None,
    "location": "hub",
    "instruction": None,
}
EVAL_DEFAULTS = {
    "split": "test",
    "limit": None,
    "max_new_tokens": None,  # None: from the references' length (see eval/generate.py)
    "backend": "vllm",
    "adapter_mode": "auto",  # lora (vLLM LoRARequest) | merged | auto: lora on GPU, merged on CPU
    "batch_size": 16,
}


class RecipeError(ValueError):
    """A recipe that cannot run: says which file and key, and how to fix it."""


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yml", ".yaml") and path.exists():
        return path.resolve()
    candidate = RECIPES / f"{name_or_path}.yml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in RECIPES.glob("*.yml") if not p.stem.startswith("_"))
    hint = difflib.get_close_matches(name_or_path, known, n=1)
    raise RecipeError(
        f"no recipe '{name_or_path}'"
        + (f" (did you mean '{hint[0]}'?)" if hint else "")
        + f": recipes are {', '.join(known)}"
    )


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    if path in _chain:
        raise RecipeError(f"{path}: 'inherit' loops back to itself via {' -> '.join(map(str, _chain))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of keys to values")
    parents = data.pop("inherit", None) or []
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, load_recipe((path.parent / parent).resolve(), (*_chain, path)))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise RecipeError(f"override '{text}' is not KEY=VALUE (e.g. max_steps=100)")
    return key.split("."), yaml.safe_load(raw) if raw else None


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{text}': '{key}' is not a block")
        node[keys[-1]] = value
    return config


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise RecipeError(
                f"'{value}' uses ${{{m.group(1)}}}, which is not set: export it or give a default"
            )

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def repo_path(value: str) -> str:
    """Relative local paths in recipes are relative to the repo root; hub ids stay as they are."""
    path = Path(value)
    if path.is_absolute():
        return value
    local = REPO / path
    return str(local) if value.startswith((".", "/")) or local.exists() else value


def resolve(name_or_path: str, overrides: list[str] = ()) -> tuple[dict, dict, Path]:
    """Return (axolotl config, project blocks, recipe file) with overrides applied."""
    path = recipe_path(name_or_path)
    config = expand_env(apply_overrides(load_recipe(path), list(overrides)))
    project = {
        "data": {**DATA_DEFAULTS, **(config.pop("data", None) or {})},
        "evaluation": {**EVAL_DEFAULTS, **(config.pop("evaluation", None) or {})},
    }
    for block, defaults in (("data", DATA_DEFAULTS), ("evaluation", EVAL_DEFAULTS)):
        unknown = set(project[block]) - set(defaults)
        if unknown:
            raise RecipeError(
                f"{path}: unknown key(s) in '{block}': {', '.join(sorted(unknown))}; known: {', '.join(defaults)}"
            )
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        if isinstance(config.get(key), str):
            config[key] = repo_path(config[key])
    if project["data"]["location"] not in (None, "", "hub"):
        project["data"]["location"] = str(Path(repo_path(str(project["data"]["location"]))).resolve())
    return config, project, path


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


def validate(config: dict, source: Path) -> None:
    """Axolotl's own schema plus the unknown-key check it lacks. Loads no model."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    bad = unknown_keys(config)
    if bad:
        raise RecipeError(f"{source}: unknown key(s) that Axolotl would silently ignore: {'; '.join(bad)}")
    try:
        validate_config(DictDefault(copy.deepcopy(config)))
    except Exception as err:  # pydantic ValidationError or Axolotl's own ValueErrors
        raise RecipeError(f"{source}: Axolotl rejects this config: {err}") from None


def check_against_model(config: dict, source: Path, cuda_bf16: bool | None) -> None:
    """Checks that need the model's config (not its weights): they fail in the first second
    instead of after the download and the quantization of a multi-GB model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if not config.get("base_model"):
        raise RecipeError(f"{source}: no base_model: name a hub id or a local model folder")
    if config.get("adapter") == "qlora" and not config.get("load_in_4bit"):
        raise RecipeError(
            f"{source}: adapter: qlora needs load_in_4bit: true (inherit _qlora.yml), or use adapter: lora"
        )
    if config.get("bf16") is True and cuda_bf16 is False:
        raise RecipeError(
            f"{source}: bf16: true, but this GPU has no bf16: set bf16: false and fp16: true (or bf16: auto)"
        )
    try:
        model_config = AutoConfig.from_pretrained(config.get("base_model_config") or config["base_model"])
    except (OSError, ValueError) as err:
        raise RecipeError(
            f"{source}: cannot read the config of base_model {config['base_model']!r}: {err}"
        ) from None
    max_positions = getattr(model_config, "max_position_embeddings", None)
    if max_positions and config.get("sequence_len", 0) > max_positions:
        raise RecipeError(
            f"{source}: sequence_len {config['sequence_len']} is above the model's maximum {max_positions} positions"
        )
    targets = config.get("lora_target_modules")
    if config.get("adapter") and targets and not config.get("lora_target_linear"):
        auto = (
            AutoModelForSeq2SeqLM
            if getattr(model_config, "is_encoder_decoder", False)
            else AutoModelForCausalLM
        )
        with torch.device("meta"):
            model = auto.from_config(model_config)
        linear = {
            name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)
        }
        missing = [t for t in ([targets] if isinstance(targets, str) else targets) if t not in linear]
        if missing:
            raise RecipeError(
                f"{source}: lora_target_modules {missing} do not exist in {config['base_model']} "
                f"({model_config.model_type}); its linear layers are: {', '.join(sorted(linear))}"
            )
