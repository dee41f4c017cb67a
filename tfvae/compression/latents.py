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

DEFAULT_BITS = 12  # HiLLoC's are 2^10; see docs/compression.md for the measured rates
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


def reverse_bits(indices, bits: int) -> np.ndarray:
    """int64 [...]: each index in 0..2^B - 1 with its B bits in reverse order (an involution)."""
    indices = np.asarray(indices, np.int64)
    reversed_ = np.zeros_like(indices)
    for b in range(bits):
        reversed_ |= ((indices >> b) & 1) << (bits - 1 - b)
    return reversed_


class _BitReversed:
    """A codec of B-bit symbols that pushes and pops each with its bits reversed."""

    def __init__(self, codec, bits: int):
        self.codec, self.bits = codec, bits

    def push(self, coder, symbols):
        self.codec.push(coder, reverse_bits(symbols, self.bits))

    def pop(self, coder) -> np.ndarray:
        return reverse_bits(self.codec.pop(coder), self.bits)


SCRAMBLES = ("none", "bit_reversed")


class EqualMass:
    """The buckets above as a discretisation: `prior(n)` and `posterior(...)` codecs of flat
    bucket indices, `centres`.

    scramble="bit_reversed" pushes each bucket under the prior with its index's bits reversed,
    at the same B bits: the next image's posterior pops read the top of the stack as quantiles,
    most significant bit first, and the index of a latent sitting in its prior's tail (as a
    model's codes often do) starts with a run of equal bits, which would pull every following
    posterior draw towards one end of q; reversed, the quantile starts with the index's
    low-order bits, which vary from image to image (docs/compression.md has the measured rate).
    """

    kind = "equal-mass buckets under each latent's prior"

    def __init__(self, bits: int, scramble: str = "none"):
        if scramble not in SCRAMBLES:
            raise ValueError(f"Unknown bucket scramble {scramble!r}; accepted: {SCRAMBLES}.")
        self.bits, self.scramble = int(bits), scramble

    def describe(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "scramble": self.scramble}

    def prior(self, n: int):
        codec = ans.Uniform(self.bits, n)
        return _BitReversed(codec, self.bits) if self.scramble == "bit_reversed" else codec

    def centres(self, bins, prior_loc, prior_scale) -> np.ndarray:
        return centres(bins, prior_loc, prior_scale, self.bits)

    def posterior(self, prior_loc, prior_scale, loc, scale) -> _Flat:
        return _Flat(posterior_codec(prior_loc, prior_scale, loc, scale, self.bits), self.bits)


class _Flat:
    """`posterior_codec`'s parts as one flat index array."""

    def __init__(self, serial: ans.Serial, bits: int):
        self.serial, self.bits = serial, bits

    def pop(self, coder) -> np.ndarray:
        return np.concatenate(self.serial.pop(coder))

    def push(self, coder, bins):
        self.serial.push(coder, split(bins, self.bits))


# ------------------------------------------------------------- equal-width grid, windowed q

GRID_RADIUS = 16.0  # the grid spans +-16 standard deviations of each latent's prior
WINDOW_SIGMAS = 4.0  # q is coded over its bins within +-4 of its standard deviations
# the windows' widths in bins: 1 to 16, then steps of at most 1/8 up to 2^20
_WIDTHS = np.unique(np.concatenate([np.arange(1, 17), np.round(16 * 1.125 ** np.arange(120))]))
_WIDTHS = _WIDTHS[_WIDTHS <= 2**20].astype(np.int64)


class Grid:
    """2^B bins of equal width 2 R / 2^B over +-R prior standard deviations (R = GRID_RADIUS)
    of each latent's conditional prior N(m_p, s_p^2), bin i centred at m_p + s_p t_i with
    t_i = (i - (2^B - 1) / 2) 2 R / 2^B, the end bins taking the tails.

    The prior codes bin i at its mass under N(0, 1) in these standardised coordinates, the
    posterior q = N(m_q, s_q^2) at its mass, both through constriction's `QuantizedGaussian`
    (no tables). q is coded over a window of its bins, within +-8 of its standard deviations
    around its mean (the window's half-width a power of 4 bins, so a few windows serve every
    latent): the coder gives every symbol of a model at least 2^-24, and a pop reading the top
    or bottom of its range (which the previous images' prior codes make common when the
    posteriors sit in the prior's tails) must then land near q, never across the grid.
    """

    kind = "equal-width grid over each latent's prior, q windowed"

    def __init__(self, bits: int, radius: float = GRID_RADIUS, window_sigmas=WINDOW_SIGMAS):
        self.bits, self.radius, self.sigmas = int(bits), float(radius), float(window_sigmas)
        self.size = 2**self.bits
        self.width = 2.0 * self.radius / self.size  # delta, in prior standard deviations
        self.middle = (self.size - 1) / 2.0  # the bin index of t = 0

    def describe(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "radius": self.radius,
                "window_sigmas": self.sigmas}  # fmt: skip

    def prior(self, n: int) -> ans.QuantizedGaussian:
        """The codec of n bins under the prior: N(0, 1) in bin units."""
        return ans.QuantizedGaussian(0, self.size - 1, self.middle, 1.0 / self.width, n)

    def centres(self, bins, prior_loc, prior_scale) -> np.ndarray:
        """float32 [N, S] centres of bins int [N, S] under priors (loc, scale) float32 [N, S]."""
        t = (np.asarray(bins, np.float64) - self.middle) * self.width
        loc, scale = np.asarray(prior_loc, np.float64), np.asarray(prior_scale, np.float64)
        return (loc + scale * t).astype(np.float32)

    def posterior(self, prior_loc, prior_scale, loc, scale) -> _Windowed:
        """The codec of n bins (flat int) under q, from float32 parameters [N, S] or [n]."""
        as64 = lambda t: np.asarray(t, np.float64).reshape(-1)  # noqa: E731
        prior_loc, prior_scale, loc, scale = map(as64, (prior_loc, prior_scale, loc, scale))
        mean = (loc - prior_loc) / prior_scale / self.width + self.middle  # in bins
        std = np.maximum(scale / prior_scale / self.width, 1e-6)
        return _Windowed(mean, std, self.size, self.sigmas)


class _Windowed:
    """Bins in [0, size) under Gaussians (mean, std in bins, float64 [n]), each coded as its
    offset in a window of w bins around the mean, w the smallest of `_WIDTHS` holding
    +-`sigmas` std (so no symbol the coder floors at 2^-24 lies further out), capped at the
    range; the latents of one w are coded together, w ascending, each in flat order."""

    def __init__(self, mean, std, size: int, sigmas: float):
        needed = np.searchsorted(_WIDTHS, 2.0 * sigmas * std + 2.0)
        width = np.minimum(_WIDTHS[np.minimum(needed, len(_WIDTHS) - 1)], size)
        self.low = np.clip(np.rint(mean - (width - 1) / 2.0), 0, size - width).astype(np.int64)
        self.parts = []
        for w in np.unique(width):
            rows = np.flatnonzero(width == w)
            codec = ans.QuantizedGaussian(0, w - 1, mean[rows] - self.low[rows], std[rows])
            self.parts.append((rows, codec))
        self.n = len(mean)

    def pop(self, coder) -> np.ndarray:
        bins = np.empty(self.n, np.int64)
        for rows, codec in self.parts:
            bins[rows] = self.low[rows] + codec.pop(coder)
        return bins

    def push(self, coder, bins):
        offsets = np.asarray(bins, np.int64).reshape(-1) - self.low
        for rows, codec in reversed(self.parts):
            codec.push(coder, offsets[rows])


KINDS = {EqualMass.kind: EqualMass, Grid.kind: Grid}


GRIDS = {"equal_mass": EqualMass, "equal_width": Grid}  # --latent_grid
SCRAMBLE = "bit_reversed"  # of the equal-mass buckets a file is written with


def default(bits: int = DEFAULT_BITS, name: str = "equal_width"):
    """The discretisation `--latent_grid=name` at B bits. Equal width by default: equal-mass
    buckets cannot place a latent beyond the prior's last bucket (3.7 prior standard deviations
    at B = 12), which cost a plain VAE 1.6 bits/dim where the grid's +-16 cost nothing; they
    did better on the IWAE quick start, by 0.27 (docs/compression.md)."""
    if name == "equal_mass":
        return EqualMass(bits, scramble=SCRAMBLE)
    return GRIDS[name](bits)


def from_description(description: dict):
    """The discretisation a file's header describes (`describe()`); ValueError (one line)
    for one this tfvae does not know."""
    kind = KINDS.get(description.get("kind"))
    if kind is None:
        raise ValueError(f"Unknown latent discretisation {description.get('kind')!r}.")
    arguments = {k: v for k, v in description.items() if k != "kind"}
    return kind(**arguments)
