import numpy as np
import pytest
from rouge_score import rouge_scorer

from eval.metrics import bootstrap_ci, get_metrics, paired_bootstrap, score_one, summarize

PRED = "Tom will buy the tickets for the concert on Friday."
REFS = [
    "Tom is buying concert tickets for Friday.",
    "The friends plan a concert; Tom buys the tickets.",
    "Friday concert.",
]
ROUGE = get_metrics(["rouge"])


def direct_f1(metric: str, prediction: str, references: list[str]) -> list[float]:
    scorer = rouge_scorer.RougeScorer([metric], use_stemmer=True)
    return [100 * scorer.score(ref, prediction)[metric].fmeasure for ref in references]


def test_scores_equal_direct_rouge_scorer_calls():
    got = score_one(ROUGE, PRED, REFS)
    for metric in ("rouge1", "rouge2", "rougeL"):
        f1 = direct_f1(metric, PRED, REFS)
        assert got["mean"][metric] == pytest.approx(np.mean(f1))
        assert got["best"][metric] == pytest.approx(max(f1))


def test_rougelsum_splits_sentences_and_rougel_does_not():
    # The same two sentences in the other order: summary-level LCS matches each sentence
    # (100); one LCS over the whole text matches only one of them (50).
    got = score_one(ROUGE, "Ben answered. Anna called.", ["Anna called. Ben answered."])["best"]
    assert got["rougeLsum"] == pytest.approx(100)
    assert got["rougeL"] == pytest.approx(50)


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
        ROUGE, {"base": ["Friday.", "Nothing."], "finetuned": [PRED, PRED]}, [REFS, REFS], n_resamples=200
    )
    row = result["scores"]["best"]["rouge1"]
    assert row["difference"]["diff"] == pytest.approx(row["finetuned"]["mean"] - row["base"]["mean"])
    assert row["finetuned"]["mean"] == pytest.approx(max(direct_f1("rouge1", PRED, REFS)))
    mean_row = result["scores"]["mean"]["rouge1"]
    assert mean_row["finetuned"]["mean"] == pytest.approx(np.mean(direct_f1("rouge1", PRED, REFS)))
    assert (
        result["keys"] == ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        and result["labels"]["rouge1"] == "ROUGE-1"
    )
