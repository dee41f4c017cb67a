"""Latents on a grid the coder can count: each latent's 2^B buckets of equal mass under its
conditional prior N(m_p, s_p^2) (HiLLoC's discretisation), bucket i the interval between
m_p + s_p Phi^-1(i / 2^B) and m_p + s_p Phi^-1((i + 1) / 2^B), represented by its centre
m_p + s_p Phi^-1((i + 1/2) / 2^B).

So the prior's code of a bucket is uniform, exactly B bits, whatever the model's prior; the
posterior's probability of each bucket is its mass under q = N(m_q, s_q^2) over the bucket's
edges, in float64 (scipy's ndtr, upper tails from the complement for accuracy). Everything is
float64 numpy from the model's float32 parameters, the centres cast back to float32 for the
model: the same inputs give the same tables and centres in an encoder and a decoder.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special

from tfvae.compression import ans

DEFAULT_BITS = 10  # HiLLoC's 2^10 buckets; see docs/compression.md for the measured rate
CHUNK_ENTRIES = 2**22  # table entries built at once (32 MiB of float64)


@functools.lru_cache(maxsize=4)
def _standard_points(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket edges [2^B + 1] (from -inf to inf) and centres [2^B] of N(0, 1), float64."""
    k = 2**bits
    edges = special.ndtri(np.arange(k + 1, dtype=np.float64) / k)
    centres = special.ndtri((np.arange(k, dtype=np.float64) + 0.5) / k)
    return edges, centres


def centres(indices, prior_loc, prior_scale, bits: int) -> np.ndarray:
    """The buckets' centres float32 [N, S] of bucket indices int [N, S] under priors
    N(loc, scale^2) float32 [N, S]."""
    _, points = _standard_points(bits)
    loc, scale = np.asarray(prior_loc, np.float64), np.asarray(prior_scale, np.float64)
    return (loc + scale * points[np.asarray(indices)]).astype(np.float32)


def posterior_log_probs(prior_loc, prior_scale, loc, scale, bits: int) -> np.ndarray:
    """log of each bucket's mass under N(loc, scale^2), float64 [n, 2^B], for n latents whose
    priors are N(prior_loc, prior_scale^2) (each argument float32 [n])."""
    edges, _ = _standard_points(bits)
    as64 = lambda t: np.asarray(t, np.float64).reshape(-1, 1)  # noqa: E731
    prior_loc, prior_scale, loc, scale = map(as64, (prior_loc, prior_scale, loc, scale))
    with np.errstate(invalid="ignore"):  # inf - inf never happens: scales are > 0
        t = (prior_loc - loc) / scale + (prior_scale / scale) * edges  # [n, 2^B + 1]
    lower, upper = t[:, :-1], t[:, 1:]
    below = special.ndtr(upper) - special.ndtr(lower)
    above = special.ndtr(-lower) - special.ndtr(-upper)  # accurate where the bucket is above 0
    mass = np.where(lower > 0, above, below)
    with np.errstate(divide="ignore"):
        return np.log(mass)


def posterior_codec(prior_loc, prior_scale, loc, scale, bits: int) -> ans.Serial:
    """The codec of n bucket indices under q (flat float32 [n] parameters), in parts of at most
    CHUNK_ENTRIES table entries: pop gives a list of index arrays, one per part."""
    n = np.size(loc)
    rows = max(1, CHUNK_ENTRIES // 2**bits)
    flat = [np.asarray(t).reshape(-1) for t in (prior_loc, prior_scale, loc, scale)]

    def part(i):
        window = [t[i * rows : (i + 1) * rows] for t in flat]
        return ans.Categorical(ans.quantised(posterior_log_probs(*window, bits)))

    return ans.Serial(part, -(-n // rows))


def split(indices, bits: int) -> list[np.ndarray]:
    """Flat indices [n] in `posterior_codec`'s parts."""
    rows = max(1, CHUNK_ENTRIES // 2**bits)
    flat = np.asarray(indices).reshape(-1)
    return [flat[i : i + rows] for i in range(0, len(flat), rows)]
