"""How offensive a message reads: alt-profanity-check's probability, computed fast enough to screen with.

`score(text)` is the probability, 0 to 1, that `text` is offensive, as alt-profanity-check's
`predict_prob` gives it. Its model is a TF-IDF vectoriser over about 15,000 words feeding five linear
SVMs, each calibrated by a sigmoid, whose probabilities are averaged. It has no list of bad words, and it
reads words, not context ("Moby Dick" scores high).

Why not just call the library: `predict_prob` costs 3 to 5 ms a call whatever the length of the text, most
of it scikit-learn's per-call bookkeeping (validating arrays, and a label encoder fitted in each of the five
folds); reading the words is a seventh of it. That is more than the whole screening budget. So this module
loads the library's own fitted vectoriser and model once per process, on first use and under a lock. It then
computes the same number from their fitted parameters: it splits the text into words as the vectoriser does
(lower case, runs of two or more word characters; stop words are never in the vocabulary), weighs the counts
of known words by the fitted IDF, normalises them, and applies each fold's coefficients, intercept and
sigmoid. A short message takes about 20 microseconds and a 4,000-character one 0.1 to 0.2 ms
(bench/profanity_bench.py), and tests/test_profanity.py checks that the result equals `predict_prob` to
within 1e-6. If an upgrade brings a model of another shape, `score` logs a warning and calls the library
instead: still correct, but slow. `uses_fast_path()` tells which one is in use.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

# scikit-learn's default pattern for a word, the only one the fast path reproduces.
WORD_PATTERN = r"(?u)\b\w\w+\b"
WORD = re.compile(r"\w")
# The vectoriser settings that the fast path computes the same way.
VECTORIZER = {
    "input": "content",
    "analyzer": "word",
    "ngram_range": (1, 1),
    "lowercase": True,
    "strip_accents": None,
    "preprocessor": None,
    "tokenizer": None,
    "token_pattern": WORD_PATTERN,
    "binary": False,
    "use_idf": True,
    "sublinear_tf": False,
    "norm": "l2",
}
# ASCII text in one bytes.translate: a word character (letter, digit, "_") to its lower case, the rest to a space.
ASCII_WORDS = bytes(ord(chr(b).lower()) if b < 128 and WORD.match(chr(b)) else 32 for b in range(256))


def library_score(text: str) -> float:
    """The library's own `predict_prob` for `text`: the reference `score` agrees with, at about 4 ms a call."""
    from profanity_check import predict_prob  # noqa: PLC0415  (loads the model: only when asked)

    return float(predict_prob([text])[0])


@dataclass(frozen=True)
class _FastScorer:
    """The fitted parameters of the library's model, laid out to score one text without scikit-learn."""

    rows: dict[str, int]  # word of the vocabulary -> its row; any other word gets row `unknown`
    unknown: int
    idf: npt.NDArray[np.float64]  # per row, with 0 for `unknown`
    coefficients: npt.NDArray[np.float64]  # rows x folds, with zeros for `unknown`
    intercepts: npt.NDArray[np.float64]  # per fold
    calibration: tuple[tuple[float, float], ...]  # per fold: the sigmoid's a and b, p = 1 / (1 + exp(a*d + b))
    word_characters: npt.NDArray[np.bool_]  # per code point: does the regex \w match it

    def words(self, text: str) -> list[str]:
        """Every run of word characters in `text`, lower-cased: the vectoriser's tokens, plus the
        one-letter runs and stop words it drops, none of which is in the vocabulary."""
        if text.isascii():
            return text.encode("ascii").translate(ASCII_WORDS).decode("ascii").split()
        points = np.frombuffer(text.lower().encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        kept = np.where(self.word_characters[points], points, np.uint32(32)).astype(np.uint32, copy=False)
        return kept.tobytes().decode("utf-32-le").split()

    def __call__(self, text: str) -> float:
        words = self.words(text)
        found = np.fromiter(map(self.rows.get, words, repeat(self.unknown)), dtype=np.intp, count=len(words))
        rows, counts = np.unique(found, return_counts=True)
        tfidf = counts * self.idf[rows]
        norm = math.sqrt(float(tfidf @ tfidf)) or 1.0  # no known word: the vector stays all zeros
        decisions = ((tfidf @ self.coefficients[rows]) / norm + self.intercepts).tolist()
        chances = [1.0 / (1.0 + math.exp(a * d + b)) for d, (a, b) in zip(decisions, self.calibration, strict=True)]
        return sum(chances) / len(chances)


def _fast_scorer(vectorizer: Any, model: Any) -> _FastScorer | None:
    """The fast scorer for this vectoriser and model, or None (logged) where it would not give the
    library's numbers."""
    try:
        params = vectorizer.get_params()
        mismatched = sorted(key for key, value in VECTORIZER.items() if params.get(key) != value)
        vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        n = len(vocabulary)
        if sorted(vocabulary.values()) != list(range(n)) or idf.shape != (n,):
            mismatched.append("vocabulary")
        if vocabulary.keys() & (vectorizer.get_stop_words() or ()):
            mismatched.append("stop_words")
        folds = list(model.calibrated_classifiers_)
        if model.method != "sigmoid" or list(model.classes_) != [0, 1] or not folds:
            mismatched.append("model")
        for fold in folds:
            svm = fold.estimator
            if (
                type(svm).__name__ != "LinearSVC"
                or list(fold.classes) != [0, 1]
                or list(svm.classes_) != [0, 1]
                or svm.coef_.shape != (1, n)
                or len(fold.calibrators) != 1
            ):
                mismatched.append("fold")
                break
    except (AttributeError, TypeError, ValueError) as error:
        mismatched = [repr(error)]
    if mismatched:
        logger.warning("profanity: the library's model differs from what the fast path reads (%s)", mismatched)
        return None
    coefficients = np.zeros((n + 1, len(folds)))
    for k, fold in enumerate(folds):
        coefficients[:n, k] = fold.estimator.coef_[0]
    # A text's TF-IDF vector has length 1 and no negative entry, so |decision| is at most this bound;
    # under 700 it keeps exp() finite.
    bound = max(
        float(np.linalg.norm(coefficients[:, k])) + abs(float(f.estimator.intercept_[0])) for k, f in enumerate(folds)
    )
    calibration = tuple((float(f.calibrators[0].a_), float(f.calibrators[0].b_)) for f in folds)
    if max(abs(a) * bound + abs(b) for a, b in calibration) >= 700:
        logger.warning("profanity: the library's model has weights too large for the fast path")
        return None
    word_characters = np.zeros(sys.maxunicode + 1, dtype=np.bool_)
    every_character = np.arange(sys.maxunicode + 1, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    for run in re.finditer(r"\w+", every_character):
        word_characters[run.start() : run.end()] = True
    return _FastScorer(
        rows=vocabulary,
        unknown=n,
        idf=np.append(idf, 0.0),
        coefficients=coefficients,
        intercepts=np.array([float(f.estimator.intercept_[0]) for f in folds]),
        calibration=calibration,
        word_characters=word_characters,
    )


_lock = threading.Lock()
_scorer: Callable[[str], float] | None = None


def load() -> Callable[[str], float]:
    """Load the library's model (about a second, and some 120 MB for scikit-learn) if this process has
    not yet: `score` does it on first use, so call this at start-up to keep the first message fast."""
    global _scorer  # noqa: PLW0603  (one model per process, loaded once)
    if _scorer is None:
        with _lock:
            if _scorer is None:
                from profanity_check import profanity_check as library  # noqa: PLC0415  (as above)

                _scorer = _fast_scorer(library.vectorizer, library.model) or library_score
    return _scorer


def uses_fast_path() -> bool:
    """Whether `score` computes the probability itself (True) or has to call the library (slow)."""
    return isinstance(load(), _FastScorer)


def score(text: str) -> float:
    """The probability, 0 to 1, that `text` is offensive, as alt-profanity-check's `predict_prob` gives it."""
    return (_scorer or load())(text)
