"""Corpora for the language-model proxy task (numpy only; torch is not imported here).

``--data DIR`` reads the Penn Treebank layout: ``train.txt``, ``valid.txt`` and ``test.txt``,
one sentence per line, tokens separated by spaces; each line ends with an ``<eos>`` token and
the vocabulary is every token of the three files, in order of first appearance (the layout
and conventions of the PTB language-modelling benchmark). Without ``--data``, a corpus is
generated here from a small seeded grammar: made-up words, nothing copied from anywhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
MAX_VOCAB = 1_000_000  # distinct tokens (PTB has 10,000, WikiText-103 267,735)
MAX_FILE_BYTES = 1 << 30  # one split file


def fingerprint(data: str | None) -> str | dict[str, str]:
    """What run.json records of the corpus's contents: the sha256 of each split file of a
    corpus directory, or ``generated corpus`` for the built-in one."""
    if data is None:
        return "generated corpus"
    from .images import file_sha256

    return {f"{k}.txt": file_sha256(Path(data) / f"{k}.txt") for k in SPLITS}


@dataclass
class Corpus:
    train: np.ndarray  # int64 token ids, <eos> after every sentence
    valid: np.ndarray
    test: np.ndarray
    vocab: list[str]
    name: str

    @property
    def size(self) -> int:
        return len(self.vocab)


def _ids(lines: list[str], index: dict[str, int], vocab: list[str]) -> np.ndarray:
    out = []
    for line in lines:
        for tok in line.split() + [EOS]:
            if tok not in index:
                index[tok] = len(vocab)
                vocab.append(tok)
            out.append(index[tok])
    return np.asarray(out, dtype=np.int64)


def from_lines(splits: dict[str, list[str]], name: str) -> Corpus:
    index: dict[str, int] = {}
    vocab: list[str] = []
    arrays = {k: _ids(splits[k], index, vocab) for k in SPLITS}
    if len(vocab) > MAX_VOCAB:
        raise ShrinkError(f"{name}: the corpus has {len(vocab):,} distinct tokens; at most "
                          f"{MAX_VOCAB:,} are supported", None,
                          "a word-level corpus with a limited vocabulary (rare words as <unk>)")
    return Corpus(arrays["train"], arrays["valid"], arrays["test"], vocab, name)


def load_dir(path: str | Path) -> Corpus:
    """A corpus in the PTB layout; missing, unreadable or empty files are errors."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ShrinkError(f"{root} is not a directory: --data for a language model is a corpus "
                          "directory", None, "--data DIR holds train.txt, valid.txt and test.txt")
    if not root.is_dir():
        raise ShrinkError(f"no such corpus directory: {root}", None,
                          "--data DIR holds train.txt, valid.txt and test.txt")
    splits = {}
    for split in SPLITS:
        f = root / f"{split}.txt"
        if f.exists() and not f.is_file():
            raise ShrinkError(f"corpus file {f} is not a regular file")
        if f.exists() and f.stat().st_size > MAX_FILE_BYTES:
            raise ShrinkError(f"corpus file {f} is larger than {MAX_FILE_BYTES >> 30} GiB", None,
                              "a proxy corpus is small: use a slice of it")
        try:
            text = f.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ShrinkError(f"corpus file missing: {f}", None,
                              "a corpus directory holds train.txt, valid.txt and test.txt") from None
        except UnicodeDecodeError as e:
            raise ShrinkError(f"{f} is not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise ShrinkError(f"cannot read {f}: {e.strerror}") from None
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise ShrinkError(f"corpus file is empty: {f}", None, "one sentence per line")
        splits[split] = lines
    return from_lines(splits, str(root))


def generated(seed: int = 0, sentences: tuple[int, int, int] = (4000, 300, 300)) -> Corpus:
    """A synthetic corpus with structure to learn: sentences from a small seeded grammar
    (subject, verb, object, modifiers) over made-up words with Zipf-like frequencies."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "du", "za", "fo", "bi", "ge"]

    def words(n: int, k: int) -> list[str]:
        out: set[str] = set()
        while len(out) < n:
            out.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, k))))
        return sorted(out)

    nouns, verbs, adjs = words(400, 3), words(150, 3), words(120, 2)
    dets, preps = ["the", "a", "every", "no", "some"], ["in", "on", "near", "with", "under"]

    def zipf(items: list[str]) -> str:
        return items[min(int(rng.paretovariate(1.1)) - 1, len(items) - 1)]

    def noun_phrase() -> list[str]:
        np_ = [rng.choice(dets)]
        if rng.random() < 0.4:
            np_.append(zipf(adjs))
        np_.append(zipf(nouns))
        if rng.random() < 0.2:
            np_ += [rng.choice(preps)] + [rng.choice(dets), zipf(nouns)]
        return np_

    def sentence() -> str:
        s = noun_phrase() + [zipf(verbs)]
        if rng.random() < 0.7:
            s += noun_phrase()
        if rng.random() < 0.3:
            s += ["and"] + noun_phrase() + [zipf(verbs)]
        return " ".join(s)

    splits = {k: [sentence() for _ in range(n)] for k, n in zip(SPLITS, sentences)}
    return from_lines(splits, "generated")


@lru_cache(maxsize=4)
def load(data: str | None) -> Corpus:
    return generated() if data is None else load_dir(data)
