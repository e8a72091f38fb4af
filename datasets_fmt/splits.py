"""Cut data without named splits into named splits by share: seeded, recorded, kept apart.

``data.split_fractions: {train: 0.8, validation: 0.1, test: 0.1}`` with ``data.split_seed``.
Records with the same prompt (instruction and dialogue) stay on one side, so a dialogue that
appears twice is never trained on and scored on. What the cut gave (seed, shares, counts and a
SHA-256 of each side's records) goes into run.yml; evaluation cuts again through the same code
and refuses to score when its sides differ from the recorded ones (the data changed since).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping

from datasets_fmt.records import DataError, Example

EXAMPLE = "{train: 0.8, validation: 0.1, test: 0.1}"


def cut(examples: list[Example], fractions: Mapping[str, float], seed: int) -> dict[str, list[Example]]:
    """Each split's share of ``examples`` (in their original order), by a seeded shuffle of
    the distinct prompts; the same seed and shares give the same cut, however they are written."""
    groups: dict[tuple[str | None, str], list[int]] = {}
    for index, ex in enumerate(examples):
        groups.setdefault((ex.instruction, ex.source), []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    names = sorted(fractions)  # the order the shares are written in changes nothing
    shares = [fractions[name] for name in names]
    bounds = [round(len(examples) * sum(shares[: i + 1])) for i in range(len(shares))]
    side_of: dict[int, str] = {}
    placed = 0
    for group in order:
        side = next((n for n, bound in zip(names, bounds, strict=True) if placed < bound), names[-1])
        side_of.update(dict.fromkeys(group, side))
        placed += len(group)
    return {name: [ex for i, ex in enumerate(examples) if side_of[i] == name] for name in fractions}


def digest(examples: list[Example]) -> str:
    """SHA-256 of a side's records (ids and texts): equal digests, equal sides."""
    text = json.dumps([ex.to_json() for ex in examples], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def split_record(
    origin: str, fractions: Mapping[str, float], seed: int, sides: dict[str, list[Example]]
) -> dict:
    """What run.yml records of a cut."""
    return {
        "from": origin,
        "seed": seed,
        "fractions": dict(fractions),
        "records": {name: len(side) for name, side in sides.items()},
        "sha256": {name: digest(side) for name, side in sides.items()},
    }


def check_sides(origin: str, fractions: Mapping[str, float], sides: dict[str, list[Example]]) -> None:
    """No split of the cut is empty."""
    total = sum(map(len, sides.values()))
    for name, side in sides.items():
        if not side:
            raise DataError(
                origin,
                None,
                None,
                f"data.split_fractions leaves the '{name}' split empty: {total} usable record(s) are too few "
                f"for a {fractions[name]:g} share; give more records or a larger share",
            )


def check_same_split(recorded: dict | None, now: dict | None) -> None:
    """Evaluation's cut gives the sides training recorded, or nothing is scored."""
    if not recorded or not now:
        return
    differ = [name for name in recorded["sha256"] if recorded["sha256"][name] != now["sha256"].get(name)]
    if differ:
        raise DataError(
            now["from"],
            None,
            None,
            f"cut by data.split_fractions (seed {now['seed']}), it no longer gives the split(s) training "
            f"recorded in run.yml ({', '.join(differ)} differ): the data changed since training, so a held-out "
            "split may hold records the model trained on; evaluate on the data the run trained on, or train again",
        )


def _share(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1


def fractions_problem(fractions, needed: Mapping[str, str | None]) -> tuple[str, str] | None:
    """What ``data.split_fractions`` gets wrong, as (dotted key, one line); ``needed``: the
    recipe keys that name a split (``data.train_split``, ...), with the split each names: the
    cut must make each of them."""
    key = "data.split_fractions"
    if not isinstance(fractions, dict) or not fractions:
        return key, f"{key} must map split names to shares, e.g. {EXAMPLE}"
    for name, share in fractions.items():
        if not _share(share):
            return key, f"{key}.{name}: {share!r} cannot be used: it must be a share in (0, 1)"
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        return key, f"{key} must add up to 1 (they add up to {total:g}), e.g. {EXAMPLE}"
    for recipe_key, name in needed.items():
        if name and name not in fractions:
            return key, (
                f"{key} makes no '{name}' split, which {recipe_key} names (it makes {', '.join(map(str, fractions))})"
            )
    return None
