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
import math

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

    def prior(self, n: int, group: int = 0):
        """The codec of n bucket indices of group `group` (flat) under the prior: B bits each."""
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

    The prior codes bin i at its mass under a coding prior in these standardised coordinates:
    coding="model", N(0, 1), the model's own prior; coding="fitted" (`default()`'s), per latent
    channel the Gaussian moment-matched to the coded images' posteriors (`fit_coding`, its
    numbers in the file's header), which costs less and leaves near-uniform bits on the stack
    for the next image's posterior pops. The posterior q = N(m_q, s_q^2) codes each bin at its
    mass, both through constriction's `QuantizedGaussian` (no tables), q over a window of its
    bins within +-WINDOW_SIGMAS of its standard deviations around its mean (`_Windowed`): the
    coder gives every symbol of a model at least 2^-24, and a pop reading the top or bottom of
    its range must land near q, never across the grid.
    """

    kind = "equal-width grid over each latent's prior, q windowed"

    def __init__(self, bits: int, radius: float = GRID_RADIUS, window_sigmas=WINDOW_SIGMAS,
                 coding="model"):  # fmt: skip
        self.bits, self.radius, self.sigmas = int(bits), float(radius), float(window_sigmas)
        self.size = 2**self.bits
        self.width = 2.0 * self.radius / self.size  # delta, in prior standard deviations
        self.middle = (self.size - 1) / 2.0  # the bin index of t = 0
        if not (coding in CODINGS or _is_fitted_coding(coding)):
            raise ValueError(
                f"Unknown coding prior {str(coding)[:80]}; accepted: {CODINGS} or, per group, "
                '{"loc": [C numbers], "scale": [C positive numbers]}.'
            )
        self.coding = coding
        self.saving_nats = 0.0  # per image, of a coding prior fitted by `fitted`

    def describe(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "radius": self.radius,
                "window_sigmas": self.sigmas, "coding": self.coding}  # fmt: skip

    def fitted(self, model, images, batch_size: int = 100):
        """This grid with each group's coding prior fitted to uint8 images [N, H, W, C]
        (`fit_coding`, scales at least one bin) when it asks for one (coding="fitted"); else
        itself."""
        if self.coding != "fitted":
            return self
        coding, saving = fit_coding(model, images, batch_size, min_scale=self.width)
        grid = Grid(self.bits, self.radius, self.sigmas, coding)
        grid.saving_nats = saving
        return grid

    def check_groups(self, shapes) -> None:
        """ValueError unless a fitted coding prior has one entry per group of these shapes
        (channels last) with one number per channel."""
        if isinstance(self.coding, list) and [len(g["loc"]) for g in self.coding] != [
            shape[-1] for shape in shapes
        ]:
            raise ValueError("the coding prior does not match the model's latent groups")

    def prior(self, n: int, group: int = 0) -> ans.QuantizedGaussian:
        """The codec of n bins of group `group` (flat, channels last) under the coding prior:
        N(a_c, b_c^2) of each latent's channel c in standardised coordinates, in bin units;
        coding="model": N(0, 1), the model's own prior. A grid still to be fitted is refused."""
        if self.coding == "model":
            return ans.QuantizedGaussian(0, self.size - 1, self.middle, 1.0 / self.width, n)
        if self.coding == "fitted":
            raise ValueError("This grid's coding prior is to be fitted first (`Grid.fitted`).")
        loc, scale = (np.asarray(self.coding[group][key], np.float64) for key in ("loc", "scale"))
        if n % len(loc):
            raise ValueError(f"{n} latents are not a whole number of {len(loc)} channels.")
        repeats = n // len(loc)
        means = self.middle + np.tile(loc, repeats) / self.width
        return ans.QuantizedGaussian(0, self.size - 1, means, np.tile(scale, repeats) / self.width)

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


CODINGS = ("fitted", "model")  # --coding_prior
_DECIMALS = 4  # of a fitted coding prior's numbers, as the header stores them
_MIN_SCALE = 0.01  # of a fitted coding prior, in prior standard deviations


def _is_fitted_coding(coding) -> bool:
    """Whether `coding` is a fitted coding prior: a non-empty list, per group, of {"loc": [C],
    "scale": [C]} of finite numbers, every scale positive (as a file's header must hold it)."""

    def numbers(values, positive=False) -> bool:
        return (
            isinstance(values, list)
            and len(values) > 0
            and all(type(v) in (int, float) and math.isfinite(v) for v in values)
            and (not positive or all(v > 0 for v in values))
        )

    return (
        isinstance(coding, list)
        and len(coding) > 0
        and all(
            isinstance(g, dict)
            and numbers(g.get("loc"))
            and numbers(g.get("scale"), positive=True)
            and len(g["loc"]) == len(g["scale"])
            for g in coding
        )
    )


def fit_coding(model, images, batch_size: int = 100, seed: int = 0,
               min_scale: float = _MIN_SCALE) -> tuple[list, float]:  # fmt: skip
    """Each group's coding prior for the grid, fitted to uint8 images [N, H, W, C]: per channel
    c (the last axis of `model.group_shapes()`), the Gaussian N(a_c, b_c^2) moment-matched to
    the images' aggregate posterior in the prior's standardised coordinates t = (z - m_p) / s_p,
    each group's prior and posterior taken with the groups above drawn from q (seeded).

    Coding the bins under it costs the cross-entropy of that aggregate, at most the model's
    N(0, 1) (which it equals on a model whose posteriors average to its prior), and the codes
    pushed are then near-uniform bits, so the next image's posterior pops read unskewed
    quantiles (docs/compression.md). Returns ([{"loc": [C], "scale": [C]}] per group, top down,
    rounded to `_DECIMALS` as a file's header stores them; the nats per image it saves over
    N(0, 1) on these images: the cross-entropies' difference, sum over latents of
    E_q[log N(t; a_c, b_c^2) - log N(t; 0, 1)]: the continuous densities', which the bins'
    masses approach where b_c spans several bins; the header's bytes not counted). Scales are
    at least `min_scale` (prior standard deviations; `Grid.fitted` passes one bin).
    """
    from tfvae.compression import bitsback

    images = np.asarray(images, np.uint8)
    shapes = model.group_shapes()
    rng = np.random.default_rng(seed)
    first = [np.zeros(shape[-1]) for shape in shapes]
    second = [np.zeros(shape[-1]) for shape in shapes]
    for start in range(0, len(images), batch_size):
        walk = bitsback.posterior_walk(model, images[start : start + batch_size])
        for group, shape in enumerate(shapes):
            prior_loc, prior_scale, loc, scale = (t.numpy() for t in walk.next_normals())
            t_loc, t_scale = (
                t.astype(np.float64).reshape(len(loc), -1, shape[-1])
                for t in ((loc - prior_loc) / prior_scale, scale / prior_scale)
            )
            first[group] += t_loc.sum((0, 1))
            second[group] += (t_loc**2 + t_scale**2).sum((0, 1))
            walk.push(loc + scale * rng.standard_normal(loc.shape).astype(np.float32))
    coding, saving = [], 0.0
    for group, shape in enumerate(shapes):
        count = len(images) * int(np.prod(shape[:-1]))
        mean = first[group] / count
        scale = np.sqrt(np.maximum(second[group] / count - mean**2, min_scale**2))
        loc = np.round(mean, _DECIMALS)
        scale = np.maximum(np.round(scale, _DECIMALS), 10.0**-_DECIMALS)
        coding.append({"loc": loc.tolist(), "scale": scale.tolist()})
        # sum over the group's t of log N(t; loc, scale^2) - log N(t; 0, 1), in expectation
        fitted = -np.log(scale) * count - (second[group] - 2 * loc * first[group]
                                           + count * loc**2) / (2 * scale**2)  # fmt: skip
        saving += float(np.sum(fitted + second[group] / 2)) / len(images)
    return coding, saving


KINDS = {EqualMass.kind: EqualMass, Grid.kind: Grid}


GRIDS = {"equal_mass": EqualMass, "equal_width": Grid}  # --latent_grid
SCRAMBLE = "bit_reversed"  # of the equal-mass buckets a file is written with


def default(bits: int = DEFAULT_BITS, name: str = "equal_width", coding: str = "fitted"):
    """The discretisation `--latent_grid=name` at B bits. Equal width by default: equal-mass
    buckets cannot place a latent beyond the prior's last bucket (3.7 prior standard deviations
    at B = 12), which cost a plain VAE 1.6 bits/dim where the grid's +-16 cost nothing. The
    grid's bins are coded under a coding prior fitted to the coded images' posteriors by
    default (coding="fitted"; "model": the model's prior), which put the IWAE quick start's
    file below its -ELBO where N(0, 1) put it 0.32 above (docs/compression.md)."""
    if name not in GRIDS:
        raise ValueError(f"Unknown latent grid {name!r}; accepted: {sorted(GRIDS)}.")
    if name == "equal_mass":
        return EqualMass(bits, scramble=SCRAMBLE)
    return Grid(bits, coding=coding)


def from_description(description: dict):
    """The discretisation a file's header describes (`describe()`); ValueError (one line)
    for one this tfvae does not know."""
    kind = KINDS.get(description.get("kind"))
    if kind is None:
        raise ValueError(f"Unknown latent discretisation {description.get('kind')!r}.")
    arguments = {k: v for k, v in description.items() if k != "kind"}
    bits = arguments.get("bits")
    if type(bits) is not int or not 1 <= bits <= 20:
        raise ValueError(f"Latent bits {bits!r} are not a whole number from 1 to 20.")
    if arguments.get("coding") == "fitted":  # a file holds the fitted numbers, never the wish
        raise ValueError("A coding prior to be fitted cannot decode a file.")
    try:
        return kind(**arguments)
    except TypeError as error:  # an argument this kind does not take
        raise ValueError(f"Unknown discretisation arguments ({error}).") from None
