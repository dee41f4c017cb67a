"""Codecs over constriction's ANS stack, composed craystack-style: a codec is a pair
`push(coder, symbols)` / `pop(coder) -> symbols`, `pop` undoing `push` exactly, and a message is a
`constriction.stream.stack.AnsCoder` (a stack of uint32 words, last in first out).

Probability tables are float64 [n, K] numpy arrays, one row per symbol, quantised here in one
deterministic way (`quantised`) before constriction's `Categorical(perfect=False)` (24-bit
fixed point, every symbol at least 2^-24) sees them, so that an encoder and a decoder handed
the same float32 model outputs code with the same integer tables.
"""

from __future__ import annotations

import functools

import constriction
import numpy as np

PRECISION_BITS = 24  # constriction's fixed-point precision of a Categorical's probabilities
FLOOR = 2.0**-30  # smallest probability of a row before renormalisation (< 2^-24: see module)
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def message(words=None) -> constriction.stream.stack.AnsCoder:
    """An ANS stack: empty, or holding uint32 `words` (as `words_of` gave them)."""
    if words is None:
        return constriction.stream.stack.AnsCoder()
    return constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32))


def seeded(data: bytes) -> constriction.stream.stack.AnsCoder:
    """A stack whose words are outside bytes (a codec's file), zero-padded to whole words and
    sealed, so that bits-back pops read them as random bits and pushes give them back
    (`unseal`)."""
    padded = data + b"\0" * (-len(data) % 4)
    return constriction.stream.stack.AnsCoder(np.frombuffer(padded, "<u4").copy(), seal=True)


def unseal(coder, length: int) -> bytes:
    """The outside bytes of `seeded` once every pop has been pushed back: their first `length`."""
    return coder.get_compressed(unseal=True).astype("<u4").tobytes()[:length]


def words_of(coder) -> np.ndarray:
    """The stack's words, uint32 [W], ready to store (little endian)."""
    return coder.get_compressed().astype("<u4")


def quantised(log_probs) -> np.ndarray:
    """Rows of float64 probabilities from log-probabilities [n, K] (float32 or float64): exp,
    floored at FLOOR, renormalised; identical for identical inputs. Raises ValueError (one
    line) for non-finite values (a diverged model)."""
    log_probs = np.asarray(log_probs, np.float64)
    if not np.all(np.isfinite(log_probs) | (log_probs == -np.inf)):
        raise ValueError("The model gave non-finite probabilities; it cannot code these images.")
    probs = np.maximum(np.exp(log_probs), FLOOR)
    return probs / probs.sum(-1, keepdims=True)


class Categorical:
    """n symbols in 0..K-1, one row of the float64 probabilities [n, K] each (`quantised`)."""

    def __init__(self, probabilities):
        self.probabilities = np.ascontiguousarray(probabilities, np.float64)

    def push(self, coder, symbols):
        symbols = np.asarray(symbols, np.int32).ravel()
        coder.encode_reverse(symbols, _CATEGORICAL, self.probabilities)

    def pop(self, coder) -> np.ndarray:
        return coder.decode(_CATEGORICAL, self.probabilities)


class Uniform:
    """n symbols in 0..2^bits - 1, each exactly `bits` bits."""

    def __init__(self, bits: int, n: int):
        self.model, self.n = constriction.stream.model.Uniform(2**bits), n

    def push(self, coder, symbols):
        coder.encode_reverse(np.asarray(symbols, np.int32).ravel(), self.model)

    def pop(self, coder) -> np.ndarray:
        return coder.decode(self.model, self.n)


class Serial:
    """Codecs one after another, each built when reached (`make(i)` -> codec of part i of
    `parts`), so only one part's table is held at a time: pop gives the parts in order, push
    takes them in that order and pushes the last first."""

    def __init__(self, make, parts: int):
        self.make, self.parts = make, parts

    def push(self, coder, symbols):
        for i in reversed(range(self.parts)):
            self.make(i).push(coder, symbols[i])

    def pop(self, coder) -> list:
        return [self.make(i).pop(coder) for i in range(self.parts)]


class QuantizedGaussian:
    """n integer symbols in [low, high], symbol i a Gaussian's mass over [i - 1/2, i + 1/2]
    (constriction's `QuantizedGaussian`, renormalised to the range, every symbol at least
    2^-24), with float64 means and standard deviations [n] (scalars: the same for all n)."""

    def __init__(self, low: int, high: int, means, stds, n: int | None = None):
        self.model = _quantized_gaussian(int(low), int(high))
        self.model_range = int(high) - int(low) + 1  # symbols
        n = np.size(means) if n is None else n
        as_rows = lambda t: np.ascontiguousarray(np.broadcast_to(t, [n]), np.float64)  # noqa: E731
        self.means, self.stds = as_rows(means), as_rows(stds)

    def push(self, coder, symbols):
        symbols = np.asarray(symbols, np.int32).ravel()
        coder.encode_reverse(symbols, self.model, self.means, self.stds)

    def pop(self, coder) -> np.ndarray:
        return coder.decode(self.model, self.means, self.stds)


@functools.lru_cache(maxsize=32)
def _quantized_gaussian(low: int, high: int):
    return constriction.stream.model.QuantizedGaussian(low, high)
