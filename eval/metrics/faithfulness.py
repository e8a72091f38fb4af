"""Faithfulness: the names, numbers, dates, times and amounts a summary states that its
dialogue does not.

Rules, not a model (spaCy's English models cannot be installed offline). A *fact* is a
capitalized word (a name, place or brand; a month or weekday is a date) or a number read by
:mod:`.mentions`. A fact is *supported* when the dialogue holds the same value in any form
people write it: "two" and "2"; "5 pm", "five o'clock" and "17:00"; "$20" and "20 dollars";
"Tom's", "the Toms" and "Tom"; DialogSum's ``#Person1#`` and "Person 1". A sentence's first
word is read as a name only where the summary also writes it mid-sentence or as a possessive.
What it cannot see is in the README (Reading the report).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from eval.metrics.mentions import (
    MONTHS,
    WEEKDAYS,
    Token,
    classify,
    clock_words_after,
    numbers,
    spoken_pairs,
    tokenize,
    words_after,
)

KINDS = ("name", "number", "date", "time", "amount")
TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "madam", "st"}
# capitalized words that are not names: the pronoun I, titles, the clock's AM/PM, interjections
# that open a line of a made-up exchange, and common nouns written in capitals
NOT_NAMES = TITLES | {"i", "i'm", "i'll", "i'd", "i've", "ok", "okay", "am", "pm", "person", "ma'am"}
NOT_NAMES |= {"yes", "no", "oh", "hi", "hello", "hey", "well", "thanks", "sorry", "please", "wow", "dear"}
NOT_NAMES |= {"tv", "ai", "ceo", "id", "pc", "cd", "dvd", "atm", "vip", "cv", "hr", "usb"}
# "He's", "Here's": a contraction, not a possessive
CONTRACTED = {"he", "she", "it", "here", "there", "that", "what", "who", "where", "let", "how", "when", "why"}
# adjectives of places whose stem differs from the place's (China/Chinese share theirs)
DEMONYMS = {
    "spanish": "spain", "french": "france", "british": "britain", "english": "england",
    "dutch": "holland", "swiss": "switzerland", "greek": "greece", "welsh": "wales",
    "irish": "ireland", "danish": "denmark", "finnish": "finland", "polish": "poland",
}  # fmt: skip
# common nouns that end a name whose first word the dialogue holds
NAME_HEADS = {
    "day", "eve", "games", "street", "road", "avenue", "square", "park", "hotel", "restaurant",
    "university", "college", "school", "hospital", "company", "bank", "station", "airport",
    "museum", "city", "lake", "river", "island", "center", "centre", "store", "shop",
}  # fmt: skip
SENTENCE_OPENERS = {".", "!", "?", ":", ";", '"', "“", "'", "‘", "(", ")", "[", "*", "#", "…"}
BULLETS = {"-", "*", "•", "–"}
ROMAN = re.compile(r"[IVX]+")  # World War II: a number, not a name
DOTTED_LETTERS = re.compile(r"\b(?:[A-Za-z]\.\s?){2,}")  # U. S.
SPACED_NUMBER = re.compile(r"(\d)([.,]) (\d)")  # DialogSum's "2, 000" and "419. 6"
HHMM = re.compile(r"\b([01]?\d|2[0-3])([0-5]\d)\b")  # chat: "at 1930"
DECADE = re.compile(r"\b(\d0)['’]?s\b")  # the 80s
SPEAKER = re.compile(r"^\s*([^:\n]{1,40}):", re.MULTILINE)  # "#Person1#:" or SAMSum's "Amanda:"
# wordings of numbers that text2num does not read: (words, values they support)
PHRASES = (
    (("half", "an", "hour"), (30, 0.5)),
    (("an", "hour", "and", "a", "half"), (90, 1.5)),
    (("quarter", "of", "an", "hour"), (15,)),
    (("half", "a", "dozen"), (6,)),
    (("a", "dozen"), (12,)),
    (("a", "couple"), (2,)),
    (("twice",), (2,)),
    (("once",), (1,)),
    (("half",), (50, 0.5)),
    (("noon",), (12,)),
    (("midnight",), (12, 0)),
)


@dataclass(frozen=True)
class Span:
    """A stretch of the summary the dialogue does not support."""

    start: int
    end: int
    kind: str  # one of KINDS
    text: str


def _name_key(word: str) -> str:
    """``Tom's`` -> tom."""
    return re.sub(r"['’]s?$", "", word.lower())


def _initials(words: list[str]) -> set[str]:
    """``united states`` -> us; ``bank of china`` -> bc: what an acronym may stand for."""
    content = [w for w in words if w not in ("of", "the", "and")]
    return {"".join(w[0] for w in content[i : i + n]) for n in (2, 3, 4) for i in range(len(content) - n + 1)}


def _same_stem(a: str, b: str) -> bool:
    shared = len(os.path.commonprefix([a, b]))
    return shared >= max(4, min(len(a), len(b)) - 2) or (shared >= 3 and a.rstrip("s") == b.rstrip("s"))


def _tag_key(tag: str) -> str:
    """``#Person1#``, ``Person 1`` -> person1."""
    return re.sub(r"[#\s]", "", tag).lower()


class Facts:
    """What a dialogue states, in the normalized forms a summary's facts are looked up in."""

    def __init__(self, dialogue: str):
        tokens = tokenize(dialogue)
        self.tags = {_tag_key(t.value) for t in tokens if t.kind == "tag"}
        words = [t.lower for t in tokens if t.kind == "word"]
        self.words = {_name_key(w) for w in words}
        self.initials = _initials(words) | {
            re.sub(r"[.\s]", "", m).lower() for m in DOTTED_LETTERS.findall(dialogue)
        }
        self.values: set[float] = {float(len(set(SPEAKER.findall(dialogue))))}  # "the two speakers"
        self.times = {(int(h) % 12, int(m)) for h, m in HHMM.findall(dialogue)}
        for decade in DECADE.findall(dialogue):
            self.values |= {1900.0 + int(decade), 2000.0 + int(decade)}
        for text in {dialogue, SPACED_NUMBER.sub(r"\1\2\3", dialogue)}:
            self._read_numbers(tokenize(text))
        self.hours = {int(v) % 12 for v in self.values if v.is_integer() and 0 <= v <= 24}

    def _read_numbers(self, tokens: list[Token]) -> None:
        found = numbers(tokens, spelled_above=-1)
        mentions = [classify(n, tokens) for n in found]
        years, clocks = spoken_pairs(found, tokens)
        self.values |= {round(m.value, 2) for m in mentions} | years
        self.times |= {m.clock for m in mentions if m.clock} | clocks
        for i, tok in enumerate(tokens):
            for phrase, values in PHRASES:
                if (tok.lower, *words_after(tokens, i, len(phrase) - 1)) == phrase:
                    self.values |= {float(v) for v in values}

    def has_value(self, value: float) -> bool:
        """The number itself; ``2.50`` also as "2 dollars 50"."""
        if round(value, 2) in self.values:
            return True
        whole, _, fraction = str(value).partition(".")
        return (
            not value.is_integer()
            and float(whole) in self.values
            and (float(fraction) in self.values or float(fraction.ljust(2, "0")) in self.values)
        )

    def has_time(self, clock: tuple[int, int]) -> bool:
        hour, minute = clock
        return clock in self.times or (minute == 0 and hour in self.hours)

    def has_word(self, key: str) -> bool:
        """The word, or a word it shares all but its ending with: the Smiths/Smith,
        Belgian/Belgium, Chinese/China (not Christopher/Christina)."""
        if key in self.words or DEMONYMS.get(key) in self.words:
            return True
        if key in MONTHS | WEEKDAYS and any(key.startswith(w) for w in self.words if len(w) >= 3):
            return True  # Dec, Sat, Sept, Thurs
        if any(_same_stem(key, word) for word in self.words):
            return True
        # a misspelling of a dialogue's name (Johnny/Jonny, Betsy/Besty); short names must match
        near = difflib.get_close_matches(key, self.words, n=1, cutoff=0.8) if len(key) >= 5 else []
        return bool(near) and near[0][0] == key[0]


def _sentence_start(tokens: list[Token], i: int) -> bool:
    """First word of a sentence, line, bullet or quote: capitalized whether a name or not.
    ``Mr. Smith``'s full stop ends no sentence."""
    if i == 0 or tokens[i].line_start:
        return True
    prev = tokens[i - 1]
    if prev.value in BULLETS:
        return i == 1 or prev.line_start
    if prev.value == "." and i >= 2 and tokens[i - 2].lower in TITLES:
        return False
    return prev.value in SENTENCE_OPENERS


def _capitalized(tok: Token) -> bool:
    return (
        tok.kind == "word"
        and tok.value[0].isupper()
        and len(tok.value) > 1
        and tok.lower not in NOT_NAMES
        and not ROMAN.fullmatch(tok.value)
    )


def _name_supported(tokens: list[Token], i: int, facts: Facts, supported_before: bool) -> bool:
    tok, key = tokens[i], _name_key(tokens[i].value)
    if facts.has_word(key) or clock_words_after(tokens, i - 1):
        return True
    if tok.value.isupper() and key in facts.initials:  # UK: United Kingdom
        return True
    return supported_before and key in NAME_HEADS  # Thanksgiving Day, Olympic Games


def name_spans(tokens: list[Token], facts: Facts) -> list[Span]:
    """Capitalized words the dialogue does not hold. A sentence's first word counts only
    when the summary also writes it capitalized mid-sentence, or as a possessive."""
    capitalized = [i for i, t in enumerate(tokens) if _capitalized(t)]
    mid_sentence = {_name_key(tokens[i].value) for i in capitalized if not _sentence_start(tokens, i)}
    spans, supported = [], set()
    for i in capitalized:
        tok, key = tokens[i], _name_key(tokens[i].value)
        possessive = re.search(r"['’]s$", tok.value) is not None and key not in CONTRACTED
        if _sentence_start(tokens, i) and key not in mid_sentence and not possessive:
            supported.add(i)  # not read as a name: may still head one ("Olympic Games")
        elif _name_supported(tokens, i, facts, i - 1 in supported):
            supported.add(i)
        else:
            kind = "date" if key in MONTHS | WEEKDAYS else "name"
            spans.append(Span(tok.start, tok.end, kind, tok.value))
    spans += [
        Span(t.start, t.end, "name", t.value)
        for t in tokens
        if t.kind == "tag" and _tag_key(t.value) not in facts.tags
    ]
    return spans


def number_spans(tokens: list[Token], facts: Facts) -> list[Span]:
    spans = []
    for m in (classify(n, tokens) for n in numbers(tokens, spelled_above=1)):
        supported = facts.has_time(m.clock) if m.clock else facts.has_value(m.value)
        if not supported:
            spans.append(Span(tokens[m.first].start, tokens[m.last].end, m.kind, ""))
    return spans


def merge_adjacent(spans: list[Span], text: str) -> list[Span]:
    """``Hiring Guy``: one span, not two; each span's text filled in."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        if out and out[-1].kind == s.kind and not text[out[-1].end : s.start].strip():
            out[-1] = Span(out[-1].start, s.end, s.kind, "")
        else:
            out.append(s)
    return [Span(s.start, s.end, s.kind, text[s.start : s.end]) for s in out]


def unsupported_spans(summary: str, dialogue: str) -> list[Span]:
    """The summary's names, numbers, dates, times and amounts that the dialogue does not
    support, in order."""
    facts, tokens = Facts(dialogue), tokenize(summary)
    return merge_adjacent(name_spans(tokens, facts) + number_spans(tokens, facts), summary)


class Faithfulness:
    """A source check (``evaluation.source_checks: [faithfulness]``)."""

    label = "unsupported names, numbers, dates, times and amounts"
    kinds = KINDS
    description = (
        "rules over the summary and its dialogue: capitalized words and numbers (in words read by "
        "text2num) the dialogue does not state in any form"
    )

    def spans(self, prediction: str, source: str) -> list[Span]:
        return unsupported_spans(prediction, source)
