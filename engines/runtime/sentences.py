"""Splitting text for speech: at sentence boundaries, into pieces no longer than a model can speak.

Autoregressive TTS models cap what one call can say (Chatterbox's T3 stops at 1000 speech tokens,
40 s); past the cap the speech is cut off mid-word. Splitting where a speaker would pause anyway
keeps every piece whole and lets each be heard as soon as it is made. Both sides of the process
boundary use this (engine hosts run in their family's venv), so only the standard library is used.

    split_sentences("Dr. Smith paid $3.50. He left!", 24) == ["Dr. Smith paid $3.50.", "He left!"]

Rules, in order:
- A sentence ends at `.` `!` `?` `…` (runs of them, and closing quotes or brackets after them)
  followed by whitespace or the end; at `。` `！` `？` anywhere; and at every line break.
  A dot inside a word never ends one: 3.5, v1.2.3, example.com.
- Abbreviations do not end a sentence: titles and the like (Dr. Mr. vs. ...) never, dotted ones
  (e.g. i.e. a.m. U.S.) and single capital initials (J. R. R. Tolkien) never, and a few that often
  close a sentence too (etc. Inc. ...) only when a capital letter follows.
- A sentence longer than the budget is split at clause punctuation (, ; : followed by a space),
  then at spaces; never inside a word (a single word longer than the budget stays whole).
- Pieces are merged greedily, in order, up to the budget, joined by one space; whitespace inside
  a piece is collapsed to one space, so the pieces joined by spaces are the whole text.
"""

from __future__ import annotations

import re

__all__ = ["first_sentence", "split_sentences"]

# never the end of a sentence (lower case, without the dot)
TITLES = frozenset("""
    mr mrs ms mx dr prof sr jr st mt ft gen col capt cpt lt sgt maj rev hon gov pres sen rep
    vs approx dept esp fig figs eq eqs ref refs vol vols ch chap sec no nos pp op cit ca cf viz
""".split())
# the end of a sentence only when a capital letter follows
MAYBE_END = frozenset("etc inc ltd co corp bros al".split())

_END = re.compile(r"""[.!?…]+["'”’)\]}»]*(?=\s|$)|[。！？]+["'”’)\]}»」』]*""")
_CLAUSE = re.compile(r"[,;:]+[\"'”’)\]}»]*(?=\s)|[，；：、]+")
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")  # e.g, i.e, a.m, u.s.a (the final dot is the terminator)
_SPACE = re.compile(r"\s+")


def split_sentences(text: str, max_chars: int, *, first_max_chars: int | None = None) -> list[str]:
    """`text` in pieces of at most `max_chars` characters, each ending where a speaker pauses.

    `first_max_chars` makes the first piece shorter (the budget then doubles piece by piece up to
    `max_chars`), so a streaming engine's first sound comes sooner while later pieces stay long."""
    if max_chars < 1 or (first_max_chars is not None and first_max_chars < 1):
        raise ValueError("piece budgets must be at least one character")
    budget = min(first_max_chars or max_chars, max_chars)
    queue = [s for line in text.splitlines() for s in _sentences(line)]
    queue.reverse()  # a stack: the next sentence is queue[-1]
    pieces: list[str] = []
    while queue:
        sentence = queue.pop()
        if len(sentence) > budget:
            parts = _split_long(sentence, budget)
            sentence = parts[0]
            if len(parts) > 1:  # the rest may fit whole in a later, larger budget
                queue.append(" ".join(parts[1:]))
        while queue and len(sentence) + 1 + len(queue[-1]) <= budget:
            sentence += " " + queue.pop()
        pieces.append(sentence)
        budget = min(budget * 2, max_chars)
    return pieces


def first_sentence(text: str, max_chars: int) -> str:
    """The first sentence of `text`, by the rules above; one longer than `max_chars` is cut where
    split_sentences would cut it. "" for text without one."""
    for line in text.splitlines():
        for sentence in _sentences(line):
            return sentence if len(sentence) <= max_chars else _split_long(sentence, max_chars)[0]
    return ""


def _sentences(line: str) -> list[str]:
    """The sentences of one line, whitespace collapsed."""
    out, start = [], 0
    for match in _END.finditer(line):
        if _is_abbreviation(line, match):
            continue
        out.append(line[start:match.end()])
        start = match.end()
    out.append(line[start:])
    return [s for s in (_SPACE.sub(" ", s).strip() for s in out) if s]


def _is_abbreviation(line: str, match: re.Match[str]) -> bool:
    if match.group() != ".":  # "?!", "...", '."' and CJK stops always end a sentence
        return False
    before = line[:match.start()]
    word = before.split()[-1] if before.split() else ""
    word = word.lstrip("\"'“‘([{«")
    if not word or before[-1:].isspace():
        return False
    low = word.lower()
    if low in TITLES or _DOTTED.fullmatch(low):
        return True
    if len(word) == 1 and word.isalpha() and word.isupper() and word != "I":
        return True  # an initial
    if low in MAYBE_END:
        rest = line[match.end():].lstrip()
        return not (rest[:1].isupper())
    return False


def _split_long(sentence: str, budget: int) -> list[str]:
    """A sentence over the budget, in pieces of at most `budget`: at clauses, then at spaces."""
    clauses, start = [], 0
    for match in _CLAUSE.finditer(sentence):
        clauses.append(sentence[start:match.end()].strip())
        start = match.end()
    clauses.append(sentence[start:].strip())
    words: list[str] = []
    for clause in filter(None, clauses):
        words.extend([clause] if len(clause) <= budget else _merge(clause.split(" "), budget))
    return _merge(words, budget)


def _merge(parts: list[str], budget: int) -> list[str]:
    """Consecutive parts joined by spaces while the result stays within the budget."""
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + 1 + len(part) <= budget:
            out[-1] += " " + part
        elif part:
            out.append(part)
    return out
