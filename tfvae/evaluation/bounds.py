"""log p(x) by importance sampling and the ELBO and IWAE-k bounds of the same K samples, streamed
in chunks of samples (`bounds`, `log_likelihood`; `estimate_bounds` inside a tf.function), and
the rule that bounds a chunk's memory (`check_chunk`).

Shapes: x float32 [B, H, W, C] in [0, 1]; K importance samples per example; every estimate is
float32 [B] in nats per example. Units and conventions: `units`.
"""

from __future__ import annotations

import math
import os
import weakref

import numpy as np
import tensorflow as tf

from tfvae.evaluation import DEFAULT_CHUNK_SIZE
from tfvae.evaluation.noise import per_example_noise, per_sample_uniform
from tfvae.models import likelihoods, objectives
from tfvae.runtime import renames

DEFAULT_K = 2000  # importance samples per example of `bounds` and `log_likelihood`

# Peak float32 values alive per image dimension and decoded sample, measured as the growth of
# peak RSS of one chunk on CPU (TF 2, 16x16 and 64x64 DCGAN models): about 9 with the logistic
# (P = 2 parameters per dimension, width 4), 22 at width 64 (the decoder's feature maps), 72 with
# a 10-component mixture (P = 33.3). The rule 3 P + 16 covers each of them.
FLOATS_PER_PARAMETER = 3  # the decoder's output, its float32 parameters, log_prob's temporaries
FLOATS_PER_DIM = 16  # feature maps, dequantized pixels, log_prob's per-dimension temporaries
DEFAULT_PARAMETERS_PER_DIM = 2  # the logistic's and a learned-scale Gaussian's (a mixture: 10M/3)


def chunk_bytes(
    chunk, batch, num_dims, parameters_per_dim=DEFAULT_PARAMETERS_PER_DIM, k=0, latent_dim=0
) -> int:
    """Estimated peak bytes of one chunk of `bounds`: chunk * B decoded samples of D dims with
    P likelihood parameters each (FLOATS_PER_PARAMETER P + FLOATS_PER_DIM float32 values per
    dimension), plus the latent noise of all K samples, float32 [K, B, Z] (drawn whole)."""
    per_dim = FLOATS_PER_PARAMETER * parameters_per_dim + FLOATS_PER_DIM
    return int(4 * batch * (chunk * num_dims * per_dim + k * latent_dim))


def available_bytes() -> int:
    """Memory this process may still take: /proc/meminfo's MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_chunk(
    chunk_size,
    k,
    batch,
    num_dims,
    parameters_per_dim=DEFAULT_PARAMETERS_PER_DIM,
    latent_dim=0,
    available=None,
) -> int:
    """The chunk `bounds` decodes at once: chunk_size clipped to K; ValueError (one line naming
    --chunk_size, the bytes it needs and those available) when `chunk_bytes` exceeds memory.

    Without it a chunk far beyond memory dies in TensorFlow's allocator (a segmentation fault on
    CPU, no message). `available`: bytes (default `available_bytes()`).
    """
    chunk = min(chunk_size, k)
    need = chunk_bytes(chunk, batch, num_dims, parameters_per_dim, k, latent_dim)
    available = available_bytes() if available is None else available
    if need <= available:
        return chunk
    one = chunk_bytes(1, batch, num_dims, parameters_per_dim)
    fits = max(0, (available - chunk_bytes(0, batch, num_dims, 0, k, latent_dim)) // one)
    raise ValueError(
        f"Flag `--chunk_size` is {chunk_size}: {chunk} samples of {batch} image(s) of {num_dims} "
        f"dims at once need about {need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB is "
        f"available; accepted: at most {fits} (memory ~ batch x chunk_size)."
    )


def check_run_chunk(config, latent_dim: int, k: int, batch: int, chunk_size: int) -> int:
    """`check_chunk` for `batch` images of a run's size (config.num_dims) and likelihood, with
    latent noise of `latent_dim` per sample."""
    parameters = likelihoods.parameter_channels(
        config.likelihood, config.gaussian_scale, mixture_components=config.mixture_components
    )  # per pixel: C = 3 channels
    return check_chunk(chunk_size, k, batch, config.num_dims, parameters / 3, latent_dim)


def _renamed_k(k, num_samples):
    """K from `k`, or from the deprecated keyword `num_samples`."""
    return renames.renamed_argument("num_samples", num_samples, "k", k, DEFAULT_K)


def _bounds_graph(model, x, example_ids, seed, k, chunk_size, group_size, dequantize):
    """The compiled body of `bounds`: one encoder pass, a loop over sample chunks."""
    q = model.encode(x)
    noise = per_example_noise(seed, example_ids, k, model.latent_dim)  # [K, B, Z]
    batch, image_shape = tf.shape(x)[0], tf.shape(x)[1:]
    chunk = max(group_size, chunk_size - chunk_size % group_size)  # whole groups per chunk
    log_sum = tf.fill([batch], -np.inf)  # running log sum_k w_k
    weight_sum = tf.zeros([batch])  # running sum_k log w_k
    group_sum = tf.zeros([batch])  # running sum over groups of their log-mean-exp
    for start in tf.range(0, k, chunk):
        tf.autograph.experimental.set_loop_options(
            shape_invariants=[(t, tf.TensorShape([None])) for t in (log_sum, weight_sum, group_sum)]
        )
        size = tf.minimum(chunk, k - start)
        scored = x  # [B, H, W, C], or one dequantized x per sample [size, B, H, W, C]
        if dequantize:
            u = per_sample_uniform(seed, example_ids, start, size, image_shape)
            scored = likelihoods.dequantize(x, u)
        terms = model.terms_from_noise(scored, q, noise[start : start + size])
        log_w = objectives.log_weights_from_terms(terms)  # [size, B]
        log_sum = tf.reduce_logsumexp(tf.stack([log_sum, tf.reduce_logsumexp(log_w, 0)]), 0)
        weight_sum += tf.reduce_sum(log_w, 0)
        groups = size // group_size
        grouped = tf.reshape(log_w[: groups * group_size], [groups, group_size, batch])
        group_sum += tf.reduce_sum(tf.reduce_logsumexp(grouped, 1), 0)
    num = tf.cast(k, tf.float32)  # K, a Python int or an int32 tensor
    num_groups = tf.math.floor(num / group_size)
    return {
        "log_likelihood": log_sum - tf.math.log(num),
        "elbo": weight_sum / num,
        "iwae_bound": group_sum / num_groups - math.log(group_size),
    }


def estimate_bounds(
    model,
    x,
    example_ids,
    seed,
    k,
    chunk_size=DEFAULT_CHUNK_SIZE,
    group_size=1,
    dequantize=False,
):
    """The traceable body of `bounds` (call it inside a `tf.function`, e.g. an export).

    Args as `bounds`, except k may be an int32 scalar tensor and seed and example_ids
    are tensors (int64 [2], int [B]). Returns the same dict of float32 [B] nats.
    """
    return _bounds_graph(model, x, example_ids, seed, k, chunk_size, group_size, dequantize)


_COMPILED = weakref.WeakKeyDictionary()  # model -> {(K, chunk, group, dequantize): tf.function}


def bounds(
    model,
    x,
    k=DEFAULT_K,
    chunk_size=DEFAULT_CHUNK_SIZE,
    seed=None,
    example_ids=None,
    group_size=1,
    dequantize=False,
    *,
    num_samples=None,
):
    """Importance-sampled log p(x) and two bounds from the same K samples per example.

    With `dequantize` (for a density p on [0, 1]^D, given pixels x = v / 255), sample k is a pair
    (u_k, z_k): u_k ~ U[0, 1)^D drawn from (seed, example id, k), z_k ~ q(z | x), and the decoder
    scores x_k = (v + u_k) / 256. Why this bounds the discrete NLL: the 8-bit image v is the bin
    [v/256, (v+1)/256)^D of x, so P(v) = int_bin p(x) dx = 256^-D E_u[p((v + u)/256)], and with
    p(x) = int p(x|z) p(z) dz,
      P(v) 256^D = E_{u ~ U, z ~ q(z|v)} [w(u, z)],  w = p(x_u | z) p(z) / q(z | v)
    (q may depend on the observed v, not on u: the proposal of the pair is U(u) q(z|v)). So
    (1/K) sum_k w_k is unbiased for P(v) 256^D; by Jensen E[log (1/K) sum_k w_k] <= log P(v) +
    D ln 256, non-decreasing in K (Burda et al.'s argument, with (u, z) as the latent), and by the
    law of large numbers it converges to it as K grows. "log_likelihood" then estimates log P(v) +
    D ln 256 from below: the 'density' convention's bits/dim bounds the discrete NLL (mass of p
    outside [0, 1]^D only lowers P(v)). Without `dequantize`, log p(x) at x itself.

    Args:
      model: a `tfvae.models.base.LatentVariableModel` (`encode`, `terms_from_noise`).
      x: float32 [B, H, W, C] in [0, 1].
      k: K importance samples per example (`num_samples=`: deprecated alias).
      chunk_size: samples decoded at once per example; peak memory grows with
        chunk_size * B, not with K (`check_chunk` refuses a chunk that cannot fit in memory).
        Clipped to K, rounded down to a multiple of group_size.
      seed: int [2] stateless seed (None: drawn at random).
      example_ids: int [B] identities of the examples (default 0..B-1); with a Gaussian q, an
        example's samples depend only on (seed, its id), not on batch or chunking.
      group_size: k of the reported IWAE-k bound; K // k disjoint groups are averaged.
      dequantize: score the decoder at (v + u_k) / 256 as above (x must be v / 255, uint8 pixels
        converted by data.to_unit_interval); for density likelihoods (likelihoods.is_density).

    Returns:
      Dict of float32 [B] in nats per example: "log_likelihood" = logsumexp_k log w_k - log K,
      "elbo" = mean_k log w_k, "iwae_bound" = mean over groups of the k-sample bound.
    """
    k = _renamed_k(k, num_samples)
    if k < 1 or chunk_size < 1 or not 1 <= group_size <= k:
        raise ValueError(
            f"Need k >= 1, chunk_size >= 1 and 1 <= group_size <= k; got "
            f"k={k}, chunk_size={chunk_size}, group_size={group_size}."
        )
    x = tf.convert_to_tensor(x, tf.float32)
    chunk_size = check_chunk(chunk_size, k, x.shape[0] or 1, math.prod(x.shape[1:]))
    if seed is None:
        seed = np.random.default_rng().integers(0, 2**31, size=2)
    if example_ids is None:
        example_ids = tf.range(tf.shape(x)[0])
    key = (k, chunk_size, group_size, bool(dequantize))
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        functions[key] = tf.function(
            lambda x, ids, seed: _bounds_graph(model, x, ids, seed, *key), reduce_retracing=True
        )
    return functions[key](x, tf.cast(example_ids, tf.int64), tf.cast(seed, tf.int64))


def log_likelihood(
    model,
    x,
    k=DEFAULT_K,
    chunk_size=DEFAULT_CHUNK_SIZE,
    seed=None,
    example_ids=None,
    dequantize=False,
    *,
    num_samples=None,
):
    """Importance-sampled log p(x), float32 [B] in nats: logsumexp_k log w_k - log K.

    x is float32 [B, H, W, C] in [0, 1]; see `bounds` for the arguments (`dequantize`: log P(v)
    + D ln 256 of a density, from below). The K samples are streamed in chunks inside one
    compiled loop, so memory is bounded by chunk_size * B. `num_samples=`: deprecated alias of k.
    """
    k = _renamed_k(k, num_samples)
    return bounds(model, x, k, chunk_size, seed, example_ids, 1, dequantize)["log_likelihood"]
