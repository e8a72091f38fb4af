"""Metrics behind one interface, chosen by name (``evaluation.metrics: [rouge]``).

A metric scores one prediction against each of its references; this module turns that into
the two ways of combining several references (``mean`` and ``best``), corpus means with
bootstrap intervals, and the paired fine-tuned-minus-base difference. A new metric is one
module here plus one line in :data:`METRICS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import ClassVar, Protocol

import numpy as np
from tqdm import tqdm

# name -> "module:class", imported on use (a metric's package lives in the evaluation env)
METRICS = {"rouge": "eval.metrics.rouge:Rouge"}
AGGREGATES = ("mean", "best")  # over a prediction's references
N_RESAMPLES = 2000


class Metric(Protocol):
    keys: ClassVar[tuple[str, ...]]  # the scores it produces, e.g. rouge1, rouge2
    labels: ClassVar[dict[str, str]]  # key -> name for people, e.g. ROUGE-1
    description: ClassVar[str]  # how it was computed, for the report

    def score(self, prediction: str, reference: str) -> dict[str, float]: ...


def get_metrics(names: Sequence[str]) -> list[Metric]:
    out = []
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric '{name}': choose from {', '.join(METRICS)}")
        module, _, cls = METRICS[name].partition(":")
        out.append(getattr(importlib.import_module(module), cls)())
    return out


def score_one(
    metrics: Sequence[Metric], prediction: str, references: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{aggregate: {key: score}} for one prediction against its references."""
    per_ref = [{k: v for m in metrics for k, v in m.score(prediction, ref).items()} for ref in references]
    keys = list(per_ref[0])
    return {
        "mean": {k: float(np.mean([r[k] for r in per_ref])) for k in keys},
        "best": {k: float(max(r[k] for r in per_ref)) for k in keys},
    }


def score_all(
    metrics: Sequence[Metric], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample scores: {aggregate: {key: array over samples}}."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    pairs = zip(predictions, references, strict=True)
    rows = [
        score_one(metrics, p, r)
        for p, r in tqdm(pairs, total=len(predictions), desc="scoring", unit="item", mininterval=5)
    ]
    keys = [k for m in metrics for k in m.keys]
    return {a: {k: np.array([row[a][k] for row in rows]) for k in keys} for a in AGGREGATES}


def _resample_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    means = _resample_means(np.asarray(values, dtype=float), n_resamples, seed)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_bootstrap(
    finetuned: Sequence[float], base: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """Fine-tuned minus base on the same items: mean difference, 95% CI, and the share of
    resamples where fine-tuned did not win (a one-sided bootstrap p-value)."""
    diff = np.asarray(finetuned, dtype=float) - np.asarray(base, dtype=float)
    means = _resample_means(diff, n_resamples, seed)
    return {
        "diff": float(diff.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "p_not_better": float((means <= 0).mean()),
    }


def summarize(
    metrics: Sequence[Metric],
    systems: dict[str, Sequence[str]],
    references: Sequence[Sequence[str]],
    n_resamples: int = N_RESAMPLES,
) -> dict:
    """Corpus-level table: for each aggregate, key and system the mean with its CI, and the
    paired difference of ``finetuned`` vs ``base`` where both are present."""
    scores = {name: score_all(metrics, preds, references) for name, preds in systems.items()}
    keys = [k for m in metrics for k in m.keys]
    table: dict = {}
    for agg in AGGREGATES:
        table[agg] = {}
        for key in keys:
            row = {}
            for name in systems:
                values = scores[name][agg][key]
                low, high = bootstrap_ci(values, n_resamples)
                row[name] = {"mean": float(values.mean()), "low": low, "high": high}
            if {"base", "finetuned"} <= set(systems):
                row["difference"] = paired_bootstrap(
                    scores["finetuned"][agg][key], scores["base"][agg][key], n_resamples
                )
            table[agg][key] = row
    return {
        "n": len(references),
        "keys": keys,
        "labels": {k: m.labels[k] for m in metrics for k in m.keys},
        "description": "; ".join(m.description for m in metrics)
        + f"; mean = average over references, best = max over references; 95% percentile bootstrap ({n_resamples:,} resamples)",
        "scores": table,
        "per_sample": scores,
    }
