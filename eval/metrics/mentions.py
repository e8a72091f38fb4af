"""Reading a text's words and numbers, for the faithfulness check (:mod:`.faithfulness`).

Numbers in words are read by ``text2num``'s ``find_numbers``, which also says which tokens
they span, so a report can mark them in the original text. The context of a number makes
it a time (``5 pm``, ``17:00``, ``five o'clock``, ``half past five``), an amount (``$20``,
``20 dollars``), a date (``March 5``, ``2010``) or a plain number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from text_to_num import find_numbers

TOKEN = re.compile(
    r"(?P<tag>#[Pp]erson\s?\d+#|\b[Pp]erson\s?\d+\b)"  # DialogSum's #Person1# (a base model writes Person 1)
    r"|(?P<word>[^\W\d_][^\W_]*(?:['’][^\W\d_]+)*)"
    r"|(?P<num>\d+(?:,\s?\d{3}(?!\d)|[.,:]\d+)*)(?:(?:st|nd|rd|th|s)(?![^\W\d_]))?"
    r"|(?P<punct>\S)"
)
MONTHS = {
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
}  # fmt: skip
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
CURRENCY_SIGNS = {"$", "£", "€", "¥"}
CURRENCY_WORDS = {
    "dollar", "dollars", "buck", "bucks", "cent", "cents", "pound", "pounds", "euro", "euros",
    "yuan", "rmb", "yen", "pence", "quid", "franc", "francs", "usd", "kuai",
}  # fmt: skip
MULTIPLIERS = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
MULTIPLIERS |= {f"{word}s": value for word, value in MULTIPLIERS.items()}
MULTIPLIERS |= {"k": 1_000, "thou": 1_000, "grand": 1_000}  # chat: 80k, 80 thou
CLOCK_WORDS = {"am", "pm", "o'clock", "o’clock"}
# the two words before an hour that make it a clock time: (hours to add, minute)
CLOCK_PHRASES = {("half", "past"): (0, 30), ("quarter", "past"): (0, 15), ("quarter", "to"): (-1, 45)}


@dataclass(frozen=True)
class Token:
    """A word, number, person tag or punctuation mark, in the form text2num's
    ``find_numbers`` reads (its ``Token`` protocol)."""

    kind: str  # tag | word | num | punct
    value: str
    start: int
    end: int
    line_start: bool  # first on its line

    def text(self) -> str:
        return self.value

    def nt_separated(self, previous: Token) -> bool:
        return False

    def not_a_number_part(self) -> bool:
        return self.kind == "tag"

    @property
    def lower(self) -> str:
        return self.value.lower()


@dataclass(frozen=True)
class Number:
    """A number over tokens ``first..last`` (inclusive)."""

    first: int
    last: int
    value: float
    spelled: bool  # in words ("two"), not digits
    clock: tuple[int, int] | None = None  # written as a clock time: (hour, minute)


@dataclass(frozen=True)
class Mention:
    """A number as a text states it: its kind and value, over tokens ``first..last``
    (its currency or clock words included)."""

    first: int
    last: int
    kind: str  # number | date | time | amount
    value: float
    clock: tuple[int, int] | None = None  # a time's (hour on a 12-hour clock, minute)


def tokenize(text: str) -> list[Token]:
    out = []
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        value = m.group("num") if kind == "num" else m.group()
        line_start = "\n" in text[out[-1].end : m.start()] if out else True
        out.append(Token(kind, value, m.start(), m.end(), line_start))
    return out


def words_after(tokens: list[Token], i: int, count: int) -> tuple[str, ...]:
    return tuple(t.lower for t in tokens[i + 1 : i + 1 + count])


def digits_value(text: str) -> tuple[float | None, tuple[int, int] | None]:
    """``1,500`` -> 1500; ``2.50`` -> 2.5; ``17:30`` -> 17 and clock (17, 30). A dotted ``5.30``
    is also a clock time, as British English writes it. (None, None): a list such as ``1,2,3``."""
    text = text.replace(" ", "")
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", text):
        return float(text.replace(",", "")), None
    hour_minute = re.fullmatch(r"(\d{1,2})[:.](\d{2})", text)
    clock = None
    if hour_minute and int(hour_minute[1]) <= 24 and int(hour_minute[2]) <= 59:
        clock = (int(hour_minute[1]), int(hour_minute[2]))
    if ":" in text:
        return (float(hour_minute[1]), clock) if clock else (None, None)
    try:
        return float(text), clock
    except ValueError:
        return None, None


def numbers(tokens: list[Token], spelled_above: int) -> list[Number]:
    """Digits and numbers in words, with ``3 million`` and ``two and a half`` read whole.
    Spelled numbers up to ``spelled_above`` are left out (a summary's "one of them")."""
    found = []
    for i, tok in enumerate(tokens):
        if tok.kind == "num" and not _list_marker(tokens, i):
            value, clock = digits_value(tok.value)
            if value is None:  # 1,2,3 or 5.3.2020: its parts
                found += [Number(i, i, float(p), False) for p in re.split(r"[.,:]", tok.value) if p]
            else:
                found.append(Number(i, i, value, False, clock))
    for occ in find_numbers(tokens, "en", 0):
        first, last = occ.start, occ.end - 1
        words = {tokens[k].lower for k in range(first, last + 1)}
        if occ.value <= spelled_above or (occ.is_ordinal and "second" in words):
            continue  # "second" is as often the unit of time
        if words <= set(MULTIPLIERS):  # "5 hundred": the multiplier of the digits before it
            continue
        found.append(Number(first, last, float(occ.value), True))
    return [_read_whole(n, tokens) for n in sorted(found, key=lambda n: n.first)]


def _list_marker(tokens: list[Token], i: int) -> bool:
    """``1.`` or ``2)`` opening a line: the number of a list item, not a fact."""
    after = words_after(tokens, i, 1)
    return tokens[i].line_start and after in ((".",), (")",))


def _read_whole(n: Number, tokens: list[Token]) -> Number:
    """``3 million`` -> 3,000,000; ``two and a half`` -> 2.5."""
    after = words_after(tokens, n.last, 3)
    if not n.spelled and after[:1] and after[0] in MULTIPLIERS:
        return Number(n.first, n.last + 1, n.value * MULTIPLIERS[after[0]], False)
    if after == ("and", "a", "half"):
        return Number(n.first, n.last + 3, n.value + 0.5, n.spelled)
    return n


def clock_words_after(tokens: list[Token], i: int) -> int:
    """How many tokens after ``i`` say it is a clock time (pm, a.m., o'clock), or 0."""
    after = words_after(tokens, i, 4)
    if after[:1] and after[0] in CLOCK_WORDS:
        return 1
    if after[:1] in (("a",), ("p",)) and after[1:3] == (".", "m"):
        return 4 if after[3:4] == (".",) else 3
    return 0


def _month_near(n: Number, tokens: list[Token]) -> bool:
    """``March 5``, ``5 March``, ``5th of March``."""
    before = tokens[n.first - 1].lower if n.first else ""
    after = words_after(tokens, n.last, 2)
    month_after = after[-1:] if after[:1] == ("of",) else after[:1]
    return before in MONTHS or bool(month_after) and month_after[0] in MONTHS


def classify(n: Number, tokens: list[Token]) -> Mention:
    """A number in its context: a time, an amount, a date or a plain number."""
    before = tuple(t.lower for t in tokens[max(0, n.first - 2) : n.first])
    after = words_after(tokens, n.last, 1)
    clock_words = clock_words_after(tokens, n.last)
    if n.clock or clock_words or before in CLOCK_PHRASES:
        hour, minute = n.clock or (int(n.value) % 12, 0)
        add_hours, minute = CLOCK_PHRASES.get(before, (0, minute))
        return Mention(n.first, n.last + clock_words, "time", n.value, ((hour + add_hours) % 12, minute))
    if before[-1:] and before[-1] in CURRENCY_SIGNS:
        return Mention(n.first - 1, n.last, "amount", n.value)
    if after and after[0] in CURRENCY_WORDS:
        return Mention(n.first, n.last + 1, "amount", n.value)
    if _month_near(n, tokens) or re.fullmatch(r"(19|20)\d\d", tokens[n.first].value):
        return Mention(n.first, n.last, "date", n.value)
    return Mention(n.first, n.last, "number", n.value)


def spoken_pairs(found: list[Number], tokens: list[Token]) -> tuple[set[float], set[tuple[int, int]]]:
    """Numbers in a row that text2num reads apart: a year (``eighteen seventy-seven``: 1877)
    or a clock time (``nine-thirty``, ``6 thirty``; ``ten to nine``: 8:50)."""
    years, clocks = set(), set()
    for a, b in pairwise(found):
        between = tuple(t.lower for t in tokens[a.last + 1 : b.first])
        if between in ((), ("-",)) and b.spelled and b.value <= 99:
            if a.spelled and 10 <= a.value <= 99:
                years.add(a.value * 100 + b.value)
            if 1 <= a.value <= 12 and b.value <= 59:
                clocks.add((int(a.value) % 12, int(b.value)))
        if between in (("past",), ("to",)) and 1 <= a.value <= 30 and 1 <= b.value <= 12:
            past = between == ("past",)
            hour, minute = (b.value, a.value) if past else (b.value - 1, 60 - a.value)
            clocks.add((int(hour) % 12, int(minute)))
    return years, clocks
