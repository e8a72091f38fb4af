"""Resolve a recipe into the exact Axolotl config a run uses, plus the project's own blocks.

A recipe is an Axolotl YAML file with a few keys this project owns:

- ``inherit:`` a recipe file, or a list of them merged in order (relative to this one),
  whose keys this one overrides;
- ``trainer:`` which engine trains it (``axolotl``, or ``seq2seq`` for encoder-decoders);
- ``data:`` which corpus (or your own file, through a column map), splits and prompt format
  to use (``datasets_fmt``);
- ``evaluation:`` how ``make eval`` generates and scores.

Their defaults live in ``recipes/_base.yml`` and nowhere else. ``key=value`` overrides
(dotted keys reach into blocks: ``data.corpus=samsum``) are applied last; values are parsed
as YAML (``max_steps=10`` is an int, ``learning_rate=1e-4`` a float). ``${VAR}`` and ``${VAR:-default}`` in strings are
expanded from the environment (``MODELS_DIR`` defaults to the project's model folder).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from datasets_fmt.sources import is_hub_id
from datasets_fmt.spec import HUB
from training.paths import RECIPES, REPO, models_dir

BASE_RECIPE = RECIPES / "_base.yml"
PROJECT_BLOCKS = ("data", "evaluation", "memory")
PROJECT_KEYS = ("trainer", *PROJECT_BLOCKS)


class RecipeError(ValueError):
    """A recipe that cannot run: says which file and key, and how to fix it."""


class RecipeLoader(yaml.SafeLoader):
    """YAML as people write numbers: ``1e-4`` is a float (PyYAML's YAML 1.1 reads it as a
    string unless written ``1.0e-4``)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader)


def first_duplicate_key(node: yaml.Node | None, path: tuple[str, ...] = ()) -> tuple[str, int, int] | None:
    """The first key a mapping defines twice, at any depth, as (dotted key, first line, second
    line): YAML allows it and the last one silently wins."""
    if isinstance(node, yaml.SequenceNode):
        return next(filter(None, (first_duplicate_key(item, path) for item in node.value)), None)
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: dict[str, int] = {}
    for key, value in node.value:
        name = str(key.value)
        line = key.start_mark.line + 1
        if name in seen and name != "<<":
            return ".".join((*path, name)), seen[name], line
        seen[name] = line
        found = first_duplicate_key(value, (*path, name))
        if found:
            return found
    return None


def load_yaml_file(path: Path) -> Any:
    """A recipe file's YAML, refusing a key defined twice (naming it and both lines)."""
    loader = RecipeLoader(path.read_text(encoding="utf-8-sig"))
    try:
        node = loader.get_single_node()
        duplicate = first_duplicate_key(node)
        if duplicate:
            key, first, second = duplicate
            raise RecipeError(
                f"{path}: key '{key}' is defined twice (lines {first} and {second}); the second would "
                "silently win: keep one"
            )
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


@dataclass
class Resolved:
    """A resolved recipe: Axolotl's config, the project's settings, and where it came from."""

    config: dict
    project: dict
    source: Path
    overrides: list[str]

    @property
    def name(self) -> str:
        return self.source.stem


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yml") if not p.stem.startswith("_"))


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yml", ".yaml") and path.exists():
        return path.resolve()
    candidate = RECIPES / f"{name_or_path}.yml"
    if candidate.exists():
        return candidate
    known = recipe_names()
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


def read_yaml_mapping(path: Path) -> dict:
    """One recipe file as a mapping; a YAML error names the file, line and column."""
    try:
        data = load_yaml_file(path) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}{at}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe is a YAML mapping of keys to values, not a {type(data).__name__}"
        )
    for block in PROJECT_BLOCKS:
        if block in data and data[block] is not None and not isinstance(data[block], dict):
            raise RecipeError(
                f"{path}: '{block}:' must be a block of key: value lines, not a {type(data[block]).__name__}"
            )
    return data


def inherit_chain(path: Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path``'s parents in merge order (each file once), then ``path`` itself."""
    if path in _seen:
        raise RecipeError(f"{path}: 'inherit' loops back to itself via {' -> '.join(map(str, _seen))}")
    if not path.exists():
        raise RecipeError(f"{_seen[-1] if _seen else path}: inherits {path}, which does not exist")
    parents = read_yaml_mapping(path).get("inherit") or []
    chain: list[Path] = []
    for parent in [parents] if isinstance(parents, str) else parents:
        chain += [
            p for p in inherit_chain((path.parent / parent).resolve(), (*_seen, path)) if p not in chain
        ]
    return [*chain, path]


def load_recipe(path: Path) -> dict:
    """The recipe with every file of its inherit chain merged in order, later keys winning."""
    merged: dict = {}
    for file in inherit_chain(path):
        data = read_yaml_mapping(file)
        data.pop("inherit", None)
        merged = deep_merge(merged, data)
    return merged


@cache
def project_defaults() -> dict:
    """The ``trainer``/``data``/``evaluation``/``memory`` defaults, read from ``recipes/_base.yml``."""
    base = read_yaml_mapping(BASE_RECIPE)
    return {key: base[key] for key in PROJECT_KEYS}


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise RecipeError(f"override '{text}' is not KEY=VALUE (e.g. max_steps=100)")
    try:
        return key.split("."), load_yaml(raw) if raw else None
    except yaml.YAMLError:
        raise RecipeError(f"override '{text}': the value is not valid YAML (quote it)") from None


def add_plugin(config: dict, plugin: str) -> None:
    """Append an Axolotl plugin to the config's ``plugins:``, after the recipe's own, unless
    the list already names it (Axolotl would load it, and run its hooks, twice)."""
    plugins = config.get("plugins") or []
    config["plugins"] = plugins if plugin in plugins else [*plugins, plugin]


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
            if m.group(1) == "MODELS_DIR":
                return str(models_dir())
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


def split_project(config: dict, source: Path) -> dict:
    """Take the project's keys out of ``config``, defaults filled in, unknown keys refused."""
    defaults = project_defaults()
    project: dict = {"trainer": config.pop("trainer", None) or defaults["trainer"]}
    for block in PROJECT_BLOCKS:
        given = config.pop(block, None) or {}
        if not isinstance(given, dict):
            raise RecipeError(f"{source}: '{block}' must be a block of key: value lines")
        unknown = sorted(set(given) - set(defaults[block]))
        if unknown:
            hints = [difflib.get_close_matches(k, defaults[block], n=1) for k in unknown]
            named = ", ".join(
                k + (f" (did you mean '{h[0]}'?)" if h else "") for k, h in zip(unknown, hints, strict=True)
            )
            raise RecipeError(
                f"{source}: unknown key(s) in '{block}': {named}; known: {', '.join(defaults[block])}"
            )
        project[block] = {**defaults[block], **given}
    return project


def resolve(name_or_path: str, overrides: list[str] = ()) -> Resolved:
    """The recipe with its parents merged, overrides applied and the project's keys split off."""
    path = recipe_path(name_or_path)
    config = expand_env(apply_overrides(load_recipe(path), list(overrides)))
    project = split_project(config, path)
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        if isinstance(config.get(key), str):
            config[key] = repo_path(config[key])
    location = project["data"]["location"]
    if location not in (None, "", HUB) and not is_hub_id(repo_path(str(location))):
        project["data"]["location"] = str(Path(repo_path(str(location))).resolve())
    return Resolved(config, project, path, list(overrides))


def defining_file(source: Path, key: str) -> Path:
    """The file of ``source``'s inherit chain that sets top-level ``key`` last (for errors)."""
    found = source
    for path in inherit_chain(source):
        if key in read_yaml_mapping(path):
            found = path
    return found
