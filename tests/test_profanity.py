"""The profanity score: high for swearing, low for ordinary school talk, and computed by the fast path to
the same number as alt-profanity-check's own `predict_prob`, whatever the text."""

from __future__ import annotations

import copy
import logging
import random
import re
import sys
import threading
from typing import Any

import pytest
from profanity_check import predict_prob
from profanity_check import profanity_check as library

from moderation import profanity

SCHOOL = [
    "Can you help me with question 3 of the homework?",
    "Scunthorpe United won on Saturday",
    "Please remember your calculators for the maths test tomorrow.",
    "Does anyone have the notes from Tuesday? I missed the start of the lesson.",
    "The coach for the geography trip leaves at nine.",
    "We visited Penistone and Middlesex on the trip",
    "Shiitake mushrooms are used in the recipe",
    "Who is coming to the Sussex cricket match?",
    "The cockpit of the plane had lots of dials",
    "The assassin in the history book was executed in 1606.",
    "Read chapter four before the lesson on photosynthesis",
    "Well done everyone, great teamwork today",
    "I passed my exam!! so happy",
]
SWEARING = [
    "fuck you",
    "FUCK OFF",
    "you are a stupid fucking idiot",
    "shut up you piece of shit",
    "what the fuck is this bullshit",
    "you dumb bitch",
    "go to hell asshole",
    "what a load of crap",
    "bastard",
    "motherfucker",
]
# Words that lower-case, split or fail to split in ways worth checking, the library's non-ASCII words among them.
UNICODE = [
    "Pokémon and JOSÉ said 連絡 見学 trácht",
    "ውይይት μελ ετητης βcommand snunɐw d\u03b1lus míkka beyoncé expért 竜龙 聖やや 迷惑",
    "café naïve ﬁne straße ǅemal Ⅻ ²³ ٣ cafe\u0301",  # ligature, titlecase digraph, numerals, a combining accent
    "İstanbul \u212aelvin \u0130STANBUL",  # upper-case letters whose lower case is longer, or ASCII
    "\uff46\uff55\uff43\uff4b you sh\u0456t f\u200buck",  # full-width, a Cyrillic i, a zero-width space
    "fuck\xa0you\u3000shit\x1cdamn\x85crap\u2028bitch\u2029ass",  # separators that str.split() knows
    "emoji 😀🤬 fuck 💩 shit \U0001f595",
    "a lone surrogate \ud83d in fuck\udfff text",
    "under_score snake_case_word fuck_you 2fuck fuck2 ___",
    "",
    "   ",
    "!!!???...,,,",
    "a b c d e f g",  # one-letter words only
    "the and of to is it",  # stop words only
]
WORDS = [
    "the",
    "homework",
    "for",
    "tomorrow",
    "is",
    "page",
    "twelve",
    "and",
    "thirteen",
    "please",
    "remember",
    "your",
    "calculators",
    "we",
    "will",
    "revise",
    "chapter",
    "three",
    "before",
    "quiz",
    "on",
    "friday",
    "does",
    "anyone",
    "know",
    "when",
    "trip",
    "leaves",
    "miss",
    "said",
    "coach",
    "goes",
    "at",
    "nine",
]
RANGES = [(0x20, 0x7F), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x52F), (0x2000, 0x206F), (0x2150, 0x218F)]
RANGES += [(0x3000, 0x30FF), (0x4E00, 0x4E80), (0xD800, 0xDFFF), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF)]
RANGES += [(0x1F300, 0x1F64F), (0x10000, 0x10FFFF)]


def long_text(rng: random.Random, pool: list[str], length: int = 4000) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(pool))
    return " ".join(words)[:length]


def jumble(rng: random.Random, vocabulary: list[str], length: int) -> str:
    """Words of the model's vocabulary, swearing, case changes and characters from all over Unicode, run together
    or apart."""
    pieces: list[str] = []
    while sum(map(len, pieces)) < length:
        kind = rng.random()
        if kind < 0.4:
            word = rng.choice(vocabulary)
            pieces.append(word.upper() if rng.random() < 0.2 else word)
        elif kind < 0.5:
            pieces.append(rng.choice(SWEARING))
        elif kind < 0.8:
            low, high = rng.choice(RANGES)
            pieces.append(chr(rng.randrange(low, high)))
        else:
            pieces.append(rng.choice(" \t\n.,!?'-_0123456789"))
    return "".join(pieces)[:length]


def corpus() -> list[str]:
    rng = random.Random(2026)
    vocabulary = sorted(library.vectorizer.vocabulary_)
    texts = SCHOOL + SWEARING + UNICODE
    texts += [long_text(rng, WORDS) for _ in range(5)]
    texts += [long_text(rng, [*WORDS, "shit"]) for _ in range(5)]
    texts += [long_text(rng, vocabulary) for _ in range(10)]  # as many different known words as fit
    texts += [long_text(rng, WORDS)[:3990] + " fuck you" for _ in range(3)]
    texts += [jumble(rng, vocabulary, rng.choice([20, 60, 300, 4000])) for _ in range(200)]
    return texts


def fast() -> Any:
    scorer = profanity.load()
    assert isinstance(scorer, profanity._FastScorer)
    return scorer


def test_the_fast_path_is_in_use() -> None:
    assert profanity.uses_fast_path()


@pytest.mark.parametrize("text", SWEARING)
def test_swearing_scores_high(text: str) -> None:
    assert profanity.score(text) > 0.9


@pytest.mark.parametrize("text", SCHOOL)
def test_ordinary_school_talk_scores_low(text: str) -> None:
    assert profanity.score(text) < 0.5


@pytest.mark.parametrize("text", ["", "   ", "\n", "!!!", "a b c", "the and of"])
def test_text_without_known_words_scores_low(text: str) -> None:
    assert 0 < profanity.score(text) < 0.1


def test_a_long_message_is_scored() -> None:
    rng = random.Random(1)
    ordinary = long_text(rng, WORDS)
    abusive = long_text(rng, [*WORDS, "fuck", "shit", "bitch"])
    assert len(ordinary) == len(abusive) == 4000
    assert profanity.score(ordinary) < 0.5
    assert profanity.score(abusive) > 0.9


def test_the_fast_path_gives_the_library_s_probability() -> None:
    texts = corpus()
    expected = predict_prob(texts)
    scorer = fast()
    differences = sorted(((abs(scorer(t) - float(p)), t) for t, p in zip(texts, expected, strict=True)), reverse=True)
    worst, text = differences[0]
    assert worst < 1e-6, f"{worst} for {text[:80]!r}"
    assert {score > 0.9 for score in expected} == {True, False}  # the corpus has both kinds
    assert all(profanity.score(t) == scorer(t) for t in texts[:50])


def test_the_fast_path_reads_the_words_the_vectorizer_reads() -> None:
    """Apart from one-letter words and stop words, neither of which is in the vocabulary."""
    analyze = library.vectorizer.build_analyzer()
    stop_words = library.vectorizer.get_stop_words()
    rng = random.Random(7)
    vocabulary = sorted(library.vectorizer.vocabulary_)
    for text in UNICODE + [jumble(rng, vocabulary, 300) for _ in range(2000)]:
        words = [w for w in fast().words(text) if len(w) > 1 and w not in stop_words]
        assert words == analyze(text), text


def test_no_word_character_is_whitespace() -> None:
    """The fast path maps every other character to a space and splits on whitespace, so no word character may be
    whitespace, or it would split a word the vectorizer keeps whole."""
    word = re.compile(r"\w")
    assert [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace() and word.match(c)] == []
    assert not {w for w in library.vectorizer.vocabulary_ if len(w) < 2 or not re.fullmatch(r"\w+", w)}


@pytest.mark.parametrize(
    ("change", "value"),
    [("ngram_range", (1, 2)), ("sublinear_tf", True), ("token_pattern", r"\S+"), ("strip_accents", "unicode")],
)
def test_a_model_of_another_shape_falls_back_to_the_library(
    change: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    vectorizer = copy.deepcopy(library.vectorizer).set_params(**{change: value})
    with caplog.at_level(logging.WARNING, logger="moderation.profanity"):
        assert profanity._fast_scorer(vectorizer, library.model) is None
    assert change in caplog.text


def test_a_vocabulary_with_stop_words_falls_back_to_the_library(caplog: pytest.LogCaptureFixture) -> None:
    """The fast path counts stop words the vectorizer drops: harmless only while none is in the vocabulary."""
    vectorizer = copy.deepcopy(library.vectorizer)
    vectorizer.vocabulary_["the"] = vectorizer.vocabulary_.pop("homework")
    with caplog.at_level(logging.WARNING, logger="moderation.profanity"):
        assert profanity._fast_scorer(vectorizer, library.model) is None
    assert "stop_words" in caplog.text


def test_a_model_with_another_calibration_falls_back_to_the_library(caplog: pytest.LogCaptureFixture) -> None:
    model = copy.deepcopy(library.model)
    model.method = "isotonic"
    with caplog.at_level(logging.WARNING, logger="moderation.profanity"):
        assert profanity._fast_scorer(library.vectorizer, model) is None
    assert "model" in caplog.text


def test_the_model_is_loaded_once_however_many_threads_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profanity, "_scorer", None)
    loaded: list[object] = []
    threads = [threading.Thread(target=lambda: loaded.append(profanity.load())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaded) == 8
    assert len({id(scorer) for scorer in loaded}) == 1
