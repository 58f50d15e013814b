"""split_sentences: pieces a TTS model can say whole, cut where a speaker pauses, nothing lost."""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest

from mcp_tts.engines.runtime import sentences
from mcp_tts.engines.runtime.sentences import split_sentences


def spoken(pieces: list[str]) -> str:
    return " ".join(pieces)


def normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("text, pieces", [
    ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
    ("It costs 3.5 dollars. Then v1.2.3 shipped.", ["It costs 3.5 dollars.", "Then v1.2.3 shipped."]),
    ("See example.com for details. Done.", ["See example.com for details.", "Done."]),
    ("Use a list, e.g. this one. Or i.e. that.", ["Use a list, e.g. this one.", "Or i.e. that."]),
    ("Dr. Smith met Mr. Jones at 5 p.m. today.", ["Dr. Smith met Mr. Jones at 5 p.m. today."]),
    ("J. R. R. Tolkien wrote it. So did I. Yes.", ["J. R. R. Tolkien wrote it.", "So did I.", "Yes."]),
    ("Python vs. Rust. Pick one.", ["Python vs. Rust.", "Pick one."]),
    ("Apples, pears, etc. and more. Fine.", ["Apples, pears, etc. and more.", "Fine."]),
    ("Apples, pears, etc. The end.", ["Apples, pears, etc.", "The end."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("Really?! Yes... I think so.", ["Really?!", "Yes...", "I think so."]),
    ("(It worked.) Next one.", ["(It worked.)", "Next one."]),
    ("first line\nsecond line\n\n  third  ", ["first line", "second line", "third"]),
    ("Tabs\tand   spaces collapse.", ["Tabs and spaces collapse."]),
    ("你好。我是谁？再见！", ["你好。", "我是谁？", "再见！"]),
    ("", []),
    (" \n\t ", []),
], ids=repr)
def test_sentence_boundaries(text, pieces):
    assert [s for line in text.splitlines() for s in sentences._sentences(line)] == pieces
    assert spoken(split_sentences(text, 10_000)) == spoken(pieces)  # merged, when they all fit


def test_sentences_merge_greedily_up_to_the_budget():
    text = "One. Two. Three. Four. Five. Six."
    assert split_sentences(text, 15) == ["One. Two.", "Three. Four.", "Five. Six."]
    assert split_sentences(text, 1000) == [text]
    assert split_sentences(text, 4) == ["One.", "Two.", "Three.", "Four.", "Five.", "Six."]


def test_a_long_sentence_splits_at_clauses_then_spaces_never_mid_word():
    text = "The build ran for an hour, the tests failed twice; we fixed the cache: now it is green."
    assert split_sentences(text, 40) == ["The build ran for an hour,", "the tests failed twice;",
                                         "we fixed the cache: now it is green."]
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    pieces = split_sentences(words, 17)
    assert pieces == ["alpha beta gamma", "delta epsilon", "zeta eta theta", "iota kappa"]
    assert all(len(p) <= 17 for p in pieces)
    # a word longer than the budget stays whole: it cannot be said in halves
    assert split_sentences("a supercalifragilistic word", 10) == ["a", "supercalifragilistic", "word"]


def test_numbers_with_commas_are_not_clauses():
    assert split_sentences("We saw 1,000,000 rows, then stopped.", 20) == ["We saw 1,000,000", "rows, then stopped."]


def test_first_piece_is_shorter_and_the_budget_grows():
    text = " ".join(f"Sentence number {i}." for i in range(12))  # 19-20 chars each
    pieces = split_sentences(text, 100, first_max_chars=20)
    assert pieces[0] == "Sentence number 0."
    assert [len(p) <= b for p, b in zip(pieces, [20, 40, 80, 100, 100], strict=False)] == [True] * min(len(pieces), 5)
    assert len(pieces[1]) > 20 and len(pieces[2]) > 40
    assert spoken(pieces) == text
    # a long first sentence is cut at a clause for the first piece, the rest kept whole if it fits
    long = "We checked every file, found two problems, and fixed both of them today."
    assert split_sentences(long, 200, first_max_chars=25) == ["We checked every file,",
                                                             "found two problems, and fixed both of them today."]


def test_budgets_below_one_are_refused():
    with pytest.raises(ValueError):
        split_sentences("hi", 0)
    with pytest.raises(ValueError):
        split_sentences("hi", 10, first_max_chars=0)


@pytest.mark.parametrize("seed", range(30))
def test_random_text_loses_nothing_and_keeps_the_budget(seed):
    rng = random.Random(seed)
    vocabulary = ["word", "Dr.", "e.g.", "3.5", "v1.2.3", "end.", "why?", "wow!", "and,", "so;", "note:",
                  "x" * 40, "\n", "  ", "\t", "«quoted.»", "etc.", "U.S.", "...", "日本。", "a", "I."]
    text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 200)))
    budget = rng.randint(1, 120)
    first = rng.choice([None, rng.randint(1, 60)])
    pieces = split_sentences(text, budget, first_max_chars=first)
    assert spoken(pieces) == normalized(text)
    assert all(p and p == p.strip() for p in pieces)
    for piece in pieces:
        assert len(piece) <= budget or " " not in piece  # only a single over-long word may exceed it


def test_only_the_standard_library_is_imported():
    """Engine hosts (family venvs) and the server both import it: nothing outside the stdlib."""
    tree = ast.parse(Path(sentences.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]


def test_first_sentence_by_the_same_rules():
    from mcp_tts.engines.runtime.sentences import first_sentence

    assert first_sentence("Dr. Smith paid $3.50. He left!", 200) == "Dr. Smith paid $3.50."
    assert first_sentence("\n\n  All tests pass\nand more", 200) == "All tests pass"
    assert first_sentence("one, two, three, four", 10) == "one, two,"
    assert first_sentence("   \n ", 200) == ""
