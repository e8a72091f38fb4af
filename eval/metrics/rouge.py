"""ROUGE with Google's ``rouge-score``, stemming on.

Conventions, stated in every report because ROUGE implementations disagree:
- F1 x 100; Porter stemming; rouge-score's default tokenizer (lower-case, alphanumerics).
- ``rougeLsum`` splits sentences at ``.``/``!``/``?`` followed by whitespace (a regex, not
  NLTK's punkt, which needs a download), the way Hugging Face's summarization scripts do.
"""

from __future__ import annotations

import re

from rouge_score import rouge_scorer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def lsum_text(text: str) -> str:
    """One sentence per line: what rougeLsum reads as summary-level units."""
    return _SENTENCE_END.sub("\n", text.strip())


class Rouge:
    keys = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    labels = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
    description = "rouge-score, F1 x 100, Porter stemming; rougeLsum on regex-split sentences"

    def __init__(self) -> None:
        self.scorer = rouge_scorer.RougeScorer(list(self.keys), use_stemmer=True)

    def score(self, prediction: str, reference: str) -> dict[str, float]:
        plain = self.scorer.score(reference, prediction)
        lsum = self.scorer.score(lsum_text(reference), lsum_text(prediction))["rougeLsum"]
        return {k: 100 * (lsum if k == "rougeLsum" else plain[k]).fmeasure for k in self.keys}
