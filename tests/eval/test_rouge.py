import numpy as np
import pytest
from rouge_score import rouge_scorer

from eval.rouge import bootstrap_ci, paired_bootstrap, score_one, summarize

PRED = "Tom will buy the tickets for the concert on Friday."
REFS = [
    "Tom is buying concert tickets for Friday.",
    "The friends plan a concert; Tom buys the tickets.",
    "Friday concert.",
]


def test_scores_equal_direct_rouge_scorer_calls():
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per_ref = [direct.score(ref, PRED) for ref in REFS]
    got = score_one(PRED, REFS)
    for metric in ("rouge1", "rouge2", "rougeL"):
        f1 = [100 * s[metric].fmeasure for s in per_ref]
        assert got["mean"][metric] == pytest.approx(np.mean(f1))
        assert got["best"][metric] == pytest.approx(max(f1))


def test_rougelsum_splits_sentences():
    two = "Anna called. Ben answered."
    direct = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    expected = (
        100 * direct.score("Anna called.\nBen answered.", "Anna called.\nBen answered.")["rougeLsum"].fmeasure
    )
    assert score_one(two, [two])["best"]["rougeLsum"] == pytest.approx(expected) == pytest.approx(100)


def test_bootstrap_interval_contains_mean_and_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(0, 100, 30), rng.uniform(0, 100, 3000)
    for values in (small, large):
        low, high = bootstrap_ci(values)
        assert low <= values.mean() <= high
    assert np.subtract(*bootstrap_ci(large)[::-1]) < np.subtract(*bootstrap_ci(small)[::-1]) / 4


def test_paired_bootstrap_sees_a_consistent_gain():
    rng = np.random.default_rng(1)
    base = rng.uniform(10, 40, 200)
    better = base + rng.normal(5, 2, 200)
    result = paired_bootstrap(better, base)
    assert result["low"] > 0 and result["p_not_better"] == 0.0
    same = paired_bootstrap(base, base)
    assert same["diff"] == 0 and same["p_not_better"] == 1.0


def test_summarize_reports_both_aggregates_and_the_difference():
    result = summarize(
        {"base": ["Friday.", "Nothing."], "finetuned": [PRED, PRED]}, [REFS, REFS], n_resamples=200
    )
    row = result["scores"]["best"]["rouge1"]
    assert row["finetuned"]["mean"] > row["base"]["mean"]
    assert row["difference"]["diff"] == pytest.approx(row["finetuned"]["mean"] - row["base"]["mean"])
    assert result["scores"]["mean"]["rouge1"]["finetuned"]["mean"] <= row["finetuned"]["mean"]
