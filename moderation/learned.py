"""A small learned model beside the phrase lists and the grammar: it reads what they do not list.

Students rarely write a disclosure in set words ("gave my xbox to my cousin, i wont need it", "the pills
are lined up on my bed rn"). A linear model over the folded text's character n-grams (3 to 5 letters,
within words) and words (single and pairs), trained on the labelled corpus, scores each category; a
category counts when its probability reaches the threshold chosen at training so that ordinary chat,
traps included, raises almost no alarm. It is shipped as one small file (`data/model.npz`) and retrained
with `manage.py screen --train`. Its findings stay explainable: each names the words and letter groups
that weighed most.

Inference is numpy over a vocabulary lookup (no scikit-learn at run time): features are counted in
Python, weighted (sublinear term frequency times inverse document frequency, then unit length, as
scikit-learn's TfidfVectorizer does) and multiplied by the weights.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from moderation.normalize import quick_fold

ORDINARY = "ordinary"
MAX_CHARACTERS = 4000
EXPLAIN = 3  # features named in a finding


def features(folded: str) -> Counter[str]:
    """Character n-grams (3 to 5) of each word padded with spaces, and words and pairs of words."""
    words = folded.split()
    grams: list[str] = []
    for word in words:
        padded = f" {word} "
        for size in (3, 4, 5):
            grams.extend(padded[start : start + size] for start in range(len(padded) - size + 1))
    grams.extend(f"w:{word}" for word in words)
    grams.extend(f"w:{first} {second}" for first, second in itertools.pairwise(words))
    return Counter(grams)


@dataclass(frozen=True)
class Model:
    classes: tuple[str, ...]
    index: dict[str, int]  # feature -> column
    idf: np.ndarray[Any, np.dtype[np.float32]]
    weights: np.ndarray[Any, np.dtype[np.float32]]  # classes x features
    bias: np.ndarray[Any, np.dtype[np.float32]]
    threshold: float  # the probability of being harmful (not ordinary) from which a message counts
    names: tuple[str, ...]

    def probabilities(
        self, text: str, folded: str | None = None
    ) -> tuple[np.ndarray[Any, np.dtype[np.float64]], list[int], np.ndarray[Any, Any]]:
        """The probability of each class for `text` (or for its folding, `folded`, when the caller has it)."""
        counted = features(folded if folded is not None else quick_fold(text[:MAX_CHARACTERS])[0])
        columns = [self.index[name] for name in counted if name in self.index]
        if not columns:
            scores = self.bias.astype(np.float64)
            values = np.zeros(0)
        else:
            tf = np.array([1.0 + math.log(counted[self.names[c]]) for c in columns])
            values = tf * self.idf[columns]
            values /= np.linalg.norm(values) or 1.0
            scores = self.weights[:, columns] @ values + self.bias
        exp = np.exp(scores - scores.max())
        return exp / exp.sum(), columns, values

    def find(self, text: str, folded: str | None = None) -> list[tuple[str, float, tuple[str, ...]]]:
        """(category, probability, the features that weighed most) when the message is more likely harmful
        than the threshold allows: the likeliest harmful category, with its probability."""
        probabilities, columns, values = self.probabilities(text, folded)
        ordinary = self.classes.index(ORDINARY)
        if 1.0 - probabilities[ordinary] < self.threshold:
            return []
        row = max((r for r in range(len(self.classes)) if r != ordinary), key=lambda r: probabilities[r])
        weighed = self.weights[row, columns] * values if columns else np.zeros(0)
        ranked = [columns[i] for i in np.argsort(weighed)[::-1] if weighed[i] > 0]
        # Words read best; letter groups only when no word weighed for it.
        named = [self.names[c][2:] for c in ranked if self.names[c].startswith("w:")] or [
            self.names[c].strip() for c in ranked
        ]
        return [(self.classes[row], float(probabilities[row]), tuple(dict.fromkeys(named))[:EXPLAIN])]


MODEL_FILE = "data/model.npz"


@cache
def model() -> Model | None:
    path = resources.files("moderation").joinpath(MODEL_FILE)
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return load(handle)


def load(handle: Any) -> Model:
    data = np.load(handle, allow_pickle=False)
    names = tuple(str(name) for name in data["names"])
    classes = tuple(str(name) for name in data["classes"])
    return Model(
        classes=classes,
        index={name: column for column, name in enumerate(names)},
        idf=data["idf"].astype(np.float32),
        weights=data["weights"].astype(np.float32),
        bias=data["bias"].astype(np.float32),
        threshold=float(data["threshold"]),
        names=names,
    )


# -- training (`manage.py screen --train`) ------------------------------------------------------------------

FALSE_ALARMS = 0.01  # the share of ordinary messages (traps included) the model may alarm on, in cross-validation


def train(texts: list[str], labels: list[str], path: Path, *, min_count: int = 2, seed: int = 7) -> dict[str, Any]:
    """Fit the model on a labelled corpus (ordinary and traps labelled `ordinary`), choose its threshold
    by five-fold cross-validation (the share of ordinary messages it may alarm on: FALSE_ALARMS), and write
    it to `path`. Returns what was chosen, with the cross-validated recall."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]  # noqa: PLC0415

    folded = [features(quick_fold(text[:MAX_CHARACTERS])[0]) for text in texts]
    classes = tuple(sorted(set(labels)))
    y = np.array([classes.index(label) for label in labels])
    ordinary = classes.index(ORDINARY)

    def fit(rows: list[int]) -> Model:
        documents = Counter(name for row in rows for name in folded[row])
        names = tuple(sorted(name for name, count in documents.items() if count >= min_count))
        index = {name: column for column, name in enumerate(names)}
        idf = np.array([math.log((1 + len(rows)) / (1 + documents[name])) + 1 for name in names], dtype=np.float32)
        classifier = LogisticRegression(C=C, max_iter=3000, random_state=seed)
        classifier.fit(_matrix([folded[row] for row in rows], index, idf), y[rows])
        weights = np.zeros((len(classes), len(names)), dtype=np.float32)
        bias = np.full(len(classes), -1e3, dtype=np.float32)
        for row, label in enumerate(classifier.classes_):
            weights[label] = classifier.coef_[row]
            bias[label] = classifier.intercept_[row]
        return Model(classes, index, idf, weights, bias, 1.0, names)

    harmful = np.zeros(len(texts))
    for train_rows, test_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, y):
        fold_model = fit(list(train_rows))
        for row in test_rows:
            harmful[row] = 1.0 - fold_model.probabilities(texts[row])[0][ordinary]
    calm = np.sort(harmful[y == ordinary])[::-1]
    threshold = max(0.5, float(calm[int(FALSE_ALARMS * len(calm))]) + 1e-6)
    recall = float((harmful[y != ordinary] >= threshold).mean())
    final = fit(list(range(len(texts))))
    np.savez_compressed(
        path,
        names=np.array(final.names),
        classes=np.array(classes),
        idf=final.idf.astype(np.float16),
        weights=final.weights.astype(np.float16),
        bias=final.bias,
        threshold=np.float32(threshold),
    )
    model.cache_clear()
    return {"features": len(final.names), "threshold": threshold, "cross_validated_recall": recall}


C = 16.0  # inverse regularisation: chosen by cross-validation on the development corpus


def _matrix(rows: list[Counter[str]], index: dict[str, int], idf: np.ndarray[Any, Any]) -> Any:
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]  # noqa: PLC0415  (training only)

    data: list[float] = []
    columns: list[int] = []
    pointers = [0]
    for counted in rows:
        present = [(index[name], count) for name, count in counted.items() if name in index]
        values = np.array([(1.0 + math.log(count)) * idf[column] for column, count in present])
        norm = np.linalg.norm(values) or 1.0
        data.extend(values / norm)
        columns.extend(column for column, _ in present)
        pointers.append(len(columns))
    return csr_matrix((data, columns, pointers), shape=(len(rows), len(index)))
