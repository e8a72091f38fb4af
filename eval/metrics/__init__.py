"""Metrics behind one interface, chosen by name (``evaluation.metrics: [rouge]``).

A metric scores one prediction against each of its references; this module turns that into
the two ways of combining several references (``mean`` and ``best``), corpus means with
bootstrap intervals, and the paired fine-tuned-minus-base difference. A new metric is one
module here plus one line in :data:`METRICS`.

A source check reads a prediction against its *source* (the dialogue), not a reference, and
marks the spans the source does not support (``evaluation.source_checks: [faithfulness]``).
Its figure is the share of predictions with at least one span, with the same intervals and
paired difference. A new check is one module here plus one line in :data:`SOURCE_CHECKS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import ClassVar, Protocol

import numpy as np
from tqdm import tqdm

# name -> "module:class", imported on use (a metric's package lives in the evaluation env)
METRICS = {"rouge": "eval.metrics.rouge:Rouge"}
SOURCE_CHECKS = {"faithfulness": "eval.metrics.faithfulness:Faithfulness"}
AGGREGATES = ("mean", "best")  # over a prediction's references
N_RESAMPLES = 2000


class Metric(Protocol):
    keys: ClassVar[tuple[str, ...]]  # the scores it produces, e.g. rouge1, rouge2
    labels: ClassVar[dict[str, str]]  # key -> name for people, e.g. ROUGE-1
    description: ClassVar[str]  # how it was computed, for the report

    def score(self, prediction: str, reference: str) -> dict[str, float]: ...


class SourceSpan(Protocol):
    start: int
    end: int
    kind: str  # what sort of thing it is, e.g. name, number
    text: str


class SourceCheck(Protocol):
    label: ClassVar[str]  # what it finds, for people
    description: ClassVar[str]  # how, for the report
    kinds: ClassVar[tuple[str, ...]]  # the kinds of span it marks

    def spans(self, prediction: str, source: str) -> list[SourceSpan]: ...


def _load(registry: dict[str, str], names: Sequence[str], what: str) -> list:
    out = []
    for name in names:
        if name not in registry:
            raise ValueError(f"unknown {what} '{name}': choose from {', '.join(registry)}")
        module, _, cls = registry[name].partition(":")
        out.append(getattr(importlib.import_module(module), cls)())
    return out


def get_metrics(names: Sequence[str]) -> list[Metric]:
    return _load(METRICS, names, "metric")


def get_source_checks(names: Sequence[str]) -> dict[str, SourceCheck]:
    return dict(zip(names, _load(SOURCE_CHECKS, names, "source check"), strict=True))


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


def mean_with_ci(values: np.ndarray, n_resamples: int = N_RESAMPLES) -> dict[str, float]:
    low, high = bootstrap_ci(values, n_resamples)
    return {"mean": float(values.mean()), "low": low, "high": high}


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
                row[name] = mean_with_ci(scores[name][agg][key], n_resamples)
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


def check_sources(
    checks: dict[str, SourceCheck],
    systems: dict[str, Sequence[str]],
    sources: Sequence[str],
    n_resamples: int = N_RESAMPLES,
) -> dict:
    """For each check: per system the share of predictions with at least one unsupported
    span (95% bootstrap CI) and the spans of each item; the paired difference of
    ``finetuned`` vs ``base`` where both are present (lower is better here, so no p-value)."""
    out = {}
    for name, check in checks.items():
        spans = {
            s: [check.spans(p, src) for p, src in zip(preds, sources, strict=True)]
            for s, preds in systems.items()
        }
        flagged = {
            s: np.array([bool(items) for items in per_item], dtype=float) for s, per_item in spans.items()
        }
        result = {
            "label": check.label,
            "description": check.description,
            "kinds": list(check.kinds),
            "share": {s: mean_with_ci(values, n_resamples) for s, values in flagged.items()},
        }
        if {"base", "finetuned"} <= set(systems):
            diff = paired_bootstrap(flagged["finetuned"], flagged["base"], n_resamples)
            result["difference"] = {k: diff[k] for k in ("diff", "low", "high")}
        result["spans"] = spans
        out[name] = result
    return out
