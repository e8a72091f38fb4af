"""ROUGE with Google's ``rouge-score`` (stemming on), multi-reference, with bootstrap CIs.

Conventions, stated in every report because ROUGE implementations disagree:
- F1 x 100; Porter stemming; rouge-score's default tokenizer (lower-case, alphanumerics).
- ``rougeLsum`` splits sentences at ``.``/``!``/``?`` followed by whitespace (a regex, not
  NLTK's punkt, which needs a download), the way Hugging Face's summarization scripts do.
- Several references: ``mean`` averages the per-reference F1; ``best`` takes the maximum
  (DialogSum's paper reports scores against its three references this way or as mean; say
  which you compare to).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
AGGREGATES = ("mean", "best")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

_scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)


def _lsum_text(text: str) -> str:
    return _SENTENCE_END.sub("\n", text.strip())


def score_one(prediction: str, references: Sequence[str]) -> dict[str, dict[str, float]]:
    """{aggregate: {metric: F1 x 100}} for one prediction against its references."""
    per_ref = []
    for ref in references:
        plain = _scorer.score(ref, prediction)
        lsum = _scorer.score(_lsum_text(ref), _lsum_text(prediction))["rougeLsum"]
        per_ref.append({m: 100 * (lsum if m == "rougeLsum" else plain[m]).fmeasure for m in METRICS})
    return {
        "mean": {m: float(np.mean([r[m] for r in per_ref])) for m in METRICS},
        "best": {m: float(max(r[m] for r in per_ref)) for m in METRICS},
    }


def score_all(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample scores: {aggregate: {metric: array over samples}}."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    rows = [score_one(p, r) for p, r in zip(predictions, references, strict=True)]
    return {a: {m: np.array([row[a][m] for row in rows]) for m in METRICS} for a in AGGREGATES}


def _resample_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    means = _resample_means(values, n_resamples, seed)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_bootstrap(
    finetuned: Sequence[float], base: Sequence[float], n_resamples: int = 2000, seed: int = 0
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
    systems: dict[str, Sequence[str]], references: Sequence[Sequence[str]], n_resamples: int = 2000
) -> dict:
    """Corpus-level table: for each aggregate, metric and system the mean with its CI, and
    the paired difference of ``finetuned`` vs ``base`` where both are present."""
    scores = {name: score_all(preds, references) for name, preds in systems.items()}
    table: dict = {}
    for agg in AGGREGATES:
        table[agg] = {}
        for metric in METRICS:
            row = {}
            for name in systems:
                values = scores[name][agg][metric]
                low, high = bootstrap_ci(values, n_resamples)
                row[name] = {"mean": float(values.mean()), "low": low, "high": high}
            if {"base", "finetuned"} <= set(systems):
                row["difference"] = paired_bootstrap(
                    scores["finetuned"][agg][metric], scores["base"][agg][metric], n_resamples
                )
            table[agg][metric] = row
    return {"n": len(references), "scores": table, "per_sample": scores}
