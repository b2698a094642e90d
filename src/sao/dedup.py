"""Exact and near-duplicate detection for short texts (personas, prompts), and diversity stats.

Near-duplicates are measured by the Jaccard similarity of word 3-gram sets after
normalisation (lower case, punctuation dropped, whitespace collapsed). Candidates come
from MinHash LSH (``datasketch``), so the cost grows linearly with the number of texts;
each candidate is then confirmed with the exact Jaccard, so LSH never adds a false match.
LSH can miss a pair whose similarity sits just above the threshold (with 128 permutations,
rarely); exact repeats after normalisation are always caught by a dictionary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

DEFAULT_THRESHOLD = 0.7
NGRAM = 3
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower case, words only, single spaces."""
    return " ".join(_WORD.findall(text.lower()))


def word_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """The set of word n-grams of the normalised text; a text shorter than n words is one gram."""
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDuplicateIndex:
    """Remembers texts and finds an earlier one at Jaccard >= ``threshold`` to a new text."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = 128, seed: int = 1):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold: must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._grams: dict[str, set[str]] = {}
        self._exact: dict[str, str] = {}
        self._added: dict[str, int] = {}

    @classmethod
    def of_rows(cls, rows: list[dict], field: str, threshold: float = DEFAULT_THRESHOLD) -> NearDuplicateIndex:
        """An index holding ``row[field]`` of each row under its ``id``: a resumed stage's earlier rows."""
        index = cls(threshold)
        for row in rows:
            index.add(row["id"], row[field])
        return index

    def _minhash(self, grams: set[str]) -> MinHash:
        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([g.encode() for g in grams])
        return m

    def match(self, text: str) -> str | None:
        """The key of an earlier text that ``text`` duplicates (exactly or nearly), or None."""
        norm = normalize(text)
        if norm in self._exact:
            return self._exact[norm]
        grams = word_ngrams(text)
        # LSH returns candidates in set order, which changes with Python's hash seed: pick
        # the earliest-added match so that results are the same in every process.
        matches = [k for k in self._lsh.query(self._minhash(grams)) if jaccard(grams, self._grams[k]) >= self.threshold]
        return min(matches, key=self._added.__getitem__, default=None)

    def add(self, key: str, text: str) -> None:
        grams = word_ngrams(text)
        self._exact.setdefault(normalize(text), key)
        self._added.setdefault(key, len(self._added))
        self._grams[key] = grams
        self._lsh.insert(key, self._minhash(grams))

    def claim(self, key: str, text: str) -> str | None:
        """Add ``text`` unless it duplicates an earlier text; then return that text's key instead."""
        earlier = self.match(text)
        if earlier is None:
            self.add(key, text)
        return earlier


def first_duplicates(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> list[int | None]:
    """For each text, the index of the first earlier text it duplicates, or None.

    Each text is compared with every earlier text, kept or not, so a chain of
    near-duplicates counts each repeat.
    """
    index = NearDuplicateIndex(threshold)
    found: list[int | None] = []
    for i, text in enumerate(texts):
        match = index.match(text)
        found.append(None if match is None else int(match))
        index.add(str(i), text)
    return found


def repetition_rate(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of texts that duplicate (exactly or nearly) an earlier text."""
    if not texts:
        return 0.0
    return sum(d is not None for d in first_duplicates(texts, threshold)) / len(texts)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all word n-grams across the texts (Li et al., 2016)."""
    grams = [tuple(w[i : i + n]) for w in (normalize(t).split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
