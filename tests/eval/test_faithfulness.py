"""The faithfulness check: the facts a summary states that its dialogue does not are found
(one case per kind), the same facts written another way are not, the report's figures come
from the project's bootstrap, and both renderings mark the spans."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml

from eval.metrics import (
    bootstrap_ci,
    check_sources,
    get_metrics,
    get_source_checks,
    paired_bootstrap,
    summarize,
)
from eval.metrics.faithfulness import unsupported_spans
from eval.pipeline import EvalRequest, Evaluation
from eval.render import Item, Marked, Report, Section, to_html, to_markdown
from eval.report import write_report
from tests.eval.test_report_and_resume import fake_rows
from training.paths import FINISHED

DIALOGUE = (
    "#Person1#: Hi Tom, can Ms. Dawson meet the Smiths at five o'clock on Friday, March 5th?\n"
    "#Person2#: Sure. Tickets are twenty dollars each, and I'll bring my two kids.\n"
    "#Person1#: Great. My friend Mr. Lee from the United Kingdom has 1,500 books. We leave in half an hour."
)
SAMSUM = (
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure! 3 please\nAmanda: I'll bring you tomorrow :-)"
)


def found(summary: str, dialogue: str = DIALOGUE) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in unsupported_spans(summary, dialogue)]


@pytest.mark.parametrize(
    ("summary", "span"),
    [
        ("#Person1# and Jessica meet the Smiths.", ("name", "Jessica")),
        ("Tom meets #Person3# on Friday.", ("name", "#Person3#")),
        ("#Person2# will bring three kids.", ("number", "three")),
        ("They meet on Friday, April 5th.", ("date", "April")),
        ("They meet on Friday, March 9th.", ("date", "9th")),
        ("They meet on Sunday.", ("date", "Sunday")),
        ("They met in 2010.", ("date", "2010")),
        ("They meet at 6 pm.", ("time", "6 pm")),
        ("They meet at 17:30.", ("time", "17:30")),
        ("Tickets cost $25.", ("amount", "$25")),
        ("Tickets cost forty dollars.", ("amount", "forty dollars")),
        ("Amanda gives Jerry 4 cookies.", ("number", "4")),  # SAMSum
        ("Amanda will bring cookies to Jerry and Tom.", ("name", "Tom")),
    ],
)
def test_an_unsupported_fact_is_flagged(summary, span):
    dialogue = SAMSUM if "Amanda" in summary else DIALOGUE
    assert span in found(summary, dialogue)


@pytest.mark.parametrize(
    "summary",
    [
        "#Person1# and #Person2# talk. Person 1 asks Tom's opinion.",  # tags, possessive
        "Ms. Dawson meets the Smith family and the smiths' dog.",  # case
        "#Person1# visits the Lees.",  # a family by its name
        "They meet at 5 pm on Friday, March 5.",  # five o'clock as 5 pm
        "They meet at 17:00.",  # five o'clock on a 24-hour clock
        "Tickets are $20 and #Person2# brings 2 kids.",  # twenty dollars, two
        "Tickets cost 20 bucks; the UK friend owns 1500 books.",  # acronym, thousands
        "They leave in 30 minutes.",  # half an hour
        "In this dialogue, the conversation is friendly.",  # capitalized at a sentence start
        "Steps:\n1. Tom pays $20.\n3) Done.",  # the numbers of a list
    ],
)
def test_the_same_fact_written_another_way_is_not_flagged(summary):
    assert found(summary) == []


def test_an_hour_said_as_a_bare_number_supports_a_clock_time():
    assert found("They meet at 5 pm, not at 7:30.", "A: Shall we meet at five?\nB: Or at seven thirty.") == []


def test_the_number_of_speakers_is_supported():
    assert found("The two of them meet.", "#Person1#: Hi!\n#Person2#: Hello.") == []


def test_samsum_speakers_are_supported_names():
    assert found("Amanda baked cookies and will bring Jerry's 3 tomorrow.", SAMSUM) == []


def test_the_share_interval_and_difference_are_the_projects_bootstrap():
    systems = {
        "base": ["Tom and Jessica pay $25.", "At 6 pm.", "Tom meets Ms. Dawson.", "Tickets are $20."] * 3,
        "finetuned": ["Tom meets Jessica.", "At 5 pm.", "Tom meets Ms. Dawson.", "Tickets are $20."] * 3,
    }
    result = check_sources(get_source_checks(["faithfulness"]), systems, [DIALOGUE] * 12, n_resamples=500)
    check = result["faithfulness"]
    base, tuned = np.array([1.0, 1, 0, 0] * 3), np.array([1.0, 0, 0, 0] * 3)
    assert check["share"]["base"] == dict(
        zip(("mean", "low", "high"), (0.5, *bootstrap_ci(base, 500)), strict=True)
    )
    assert check["share"]["finetuned"]["mean"] == 0.25
    paired = paired_bootstrap(tuned, base, 500)
    assert check["difference"] == {k: paired[k] for k in ("diff", "low", "high")}
    assert check["difference"]["diff"] == -0.25
    spans = [[s.text for s in item] for item in check["spans"]["base"][:4]]
    assert spans == [["Jessica", "$25"], ["6 pm"], [], []]


def test_marks_render_in_markdown_and_html():
    text = "Tom <boss> pays $25 at 6 pm."
    marked = Marked(text, ((text.index("$"), text.index(" at")), (text.index("6"), len(text) - 1)))
    report = Report("r", [Section("s", [Item("t", "dialogue", [("fine-tuned", marked)])])])
    assert "Tom <boss> pays ⟦$25⟧ at ⟦6 pm⟧." in to_markdown(report)
    assert "Tom &lt;boss&gt; pays <mark>$25</mark> at <mark>6 pm</mark>." in to_html(report)


class Marks(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.marked = False, []

    def handle_starttag(self, tag, attrs):
        self.open = self.open or tag == "mark"

    def handle_endtag(self, tag):
        self.open = self.open and tag != "mark"

    def handle_data(self, data):
        if self.open:
            self.marked.append(data)


def test_the_report_has_the_section_with_the_worst_items_marked(tmp_path):
    rows = fake_rows()
    rows[1]["finetuned"]["text"] = "#Person1# and Jessica book a table for 7 people at 5 pm."
    texts = {s: [r[s]["text"] for r in rows] for s in ("base", "finetuned")}
    checks = check_sources(get_source_checks(["faithfulness"]), texts, [r["dialogue"] for r in rows], 200)
    run = {"recipe": "unit", "base_model": "tiny", "adapter": "lora", "data": {}, "evaluation": {}}
    generation = {"throughput": {}, "engine_start_seconds": {}, "backend": "vllm", "example_prompt": "x"}
    result = summarize(get_metrics(["rouge"]), texts, [r["references"] for r in rows], n_resamples=200)
    _, metrics = write_report(tmp_path, tmp_path, run, {}, rows, result, generation, "unit", checks)
    md, html = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    share = checks["faithfulness"]["share"]["finetuned"]["mean"]
    for text in (md, html):
        assert "Faithfulness" in text and f"fine-tuned {100 * share:.1f}%" in text
    assert "#Person1# and ⟦Jessica⟧ book a table for ⟦7⟧ people at ⟦5 pm⟧." in md
    parser = Marks()
    parser.feed(html)
    assert {"Jessica", "7", "5 pm"} <= set(parser.marked)
    flagged = json.loads((tmp_path / "metrics.json").read_text())["source_checks"]["faithfulness"]["flagged"]
    assert flagged["finetuned"]["d1"][0] == ["name", "Jessica", 14, 21] and flagged["base"] == {}
    assert metrics["source_checks"]["faithfulness"]["share"]["finetuned"]["mean"] == share


def test_a_run_recorded_before_the_check_existed_gets_it(tmp_path):
    (tmp_path / FINISHED).write_text("ok\n")
    (tmp_path / "config.yml").write_text("sequence_len: 512\n")
    old = {"recipe": "tiny", "base_model": "tiny", "evaluation": {"split": "test", "metrics": ["rouge"]}}
    (tmp_path / "run.yml").write_text(yaml.safe_dump(old))
    settings = Evaluation(EvalRequest("tiny", run_dir=tmp_path)).settings()
    assert settings["source_checks"] == ["faithfulness"]
