"""Log-likelihood estimates and their units.

bits/dim counts every dimension D = H * W * C:
- 'discrete': log p(x) is a probability over the 256 values of each channel;
  bits/dim = NLL / (D ln 2).
- 'density': log p(x) is a density on [0, 1]^D, scored at uniformly dequantized pixels
  (v + u) / 256 (see `bounds`), so -log P(v) <= NLL + D ln 256 in expectation and
  bits/dim = (NLL + D ln 256) / (D ln 2) bounds the discrete NLL.
- 'report': the convention of the report this package grew from, NLL log2(e) / (H W), per pixel
  rather than per dimension and without the dequantization term; shown only for comparison.
A Bernoulli likelihood on non-binary pixels gives no likelihood of the data: no bits/dim.
"""

from __future__ import annotations

import math
import os
import weakref

import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.evaluation import DEFAULT_CHUNK_SIZE
from tfvae.models import likelihoods, objectives
from tfvae.runtime import files

CONVENTIONS = ("discrete", "density", "report")
BITS_PER_DIM_CONVENTIONS = {
    "discrete": "NLL / (D ln 2), D = H*W*C: a probability over the 256 pixel values",
    "density": "(NLL + D ln 256) / (D ln 2): a density on [0,1], uniform dequantization",
}


def bits_per_dim(nll_nats, num_dims: int, convention: str, num_pixels: int | None = None):
    """Converts negative log-likelihoods in nats per example to bits.

    Args:
      nll_nats: float, array or tensor [B], -log p(x) in nats per example.
      num_dims: D = H * W * C.
      convention: 'discrete', 'density' or 'report' (see the module docstring).
      num_pixels: H * W, needed by 'report'.

    Returns:
      Bits per dimension ('report': bits per pixel), same shape as nll_nats.
    """
    if not tf.is_tensor(nll_nats):  # a float32 tensor stays one (graph use, e.g. an export)
        nll_nats = np.asarray(nll_nats, np.float64)
    if convention == "discrete":
        return nll_nats / (num_dims * math.log(2))
    if convention == "density":
        return (nll_nats + num_dims * math.log(256)) / (num_dims * math.log(2))
    if convention == "report":
        if not num_pixels:
            raise ValueError("Convention 'report' needs `num_pixels` (H * W); got none.")
        return nll_nats * math.log2(math.e) / num_pixels
    raise ValueError(f"Convention {convention!r} is unknown; accepted: {', '.join(CONVENTIONS)}.")


def convention_for(likelihood: str) -> str:
    """The honest bits/dim convention of a pixel likelihood; ValueError for Bernoulli."""
    conventions = {
        "discretized_logistic": "discrete",
        "discretized_logistic_mixture": "discrete",
        "gaussian": "density",
    }
    if likelihood not in conventions:
        raise ValueError(
            f"Likelihood {likelihood!r} gives no bits/dim: a Bernoulli on 8-bit pixels is a "
            "cross-entropy, not a likelihood of the data; accepted: "
            f"{', '.join(conventions)}."
        )
    return conventions[likelihood]


def per_example_noise(seed, example_ids, num_samples: int, latent_dim: int) -> tf.Tensor:
    """Standard-normal noise float32 [K, B, Z]; example e's [K, Z] depends on (seed, e) only.

    Drawing all K samples of an example from its own seed makes an estimate independent of the
    batch the example sits in and of how the K samples are chunked.
    """
    seed = tf.cast(seed, tf.int64)

    def one_example(example_id):
        example_seed = tf.random.experimental.stateless_fold_in(seed, example_id)
        return tf.random.stateless_normal([num_samples, latent_dim], example_seed, alg="philox")

    ids = tf.cast(example_ids, tf.int64)
    noise = tf.map_fn(one_example, ids, fn_output_signature=tf.float32)  # [B, K, Z]
    return tf.transpose(noise, [1, 0, 2])


def per_sample_uniform(seed, example_ids, start, num, image_shape) -> tf.Tensor:
    """Dequantization noise float32 [num, B, H, W, C] in [0, 1) for samples start..start+num-1.

    Sample k of example e depends on (seed, e, k) only, so an estimate does not depend on
    batching or chunking: example e has its own Philox key (from seed and e, a stream apart from
    per_example_noise's) and sample k the counters [k M, (k + 1) M), M = ceil(D / 4) (Philox
    makes 4 words per counter), so one draw covers a whole chunk of samples.
    """
    image_shape = tf.cast(image_shape, tf.int32)
    num = tf.cast(num, tf.int32)
    dims = tf.reduce_prod(image_shape)  # D
    blocks = (dims + 3) // 4  # M counters per sample
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), -1)

    def one_example(example_id):
        example_seed = tf.random.experimental.stateless_fold_in(seed, example_id)
        key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(seed=example_seed)
        first = tf.cast(start, tf.int64) * tf.cast(blocks, tf.int64)  # sample start's counter
        counter = tf.cast(tf.stack([first, 0]), tf.uint64)
        words = tf.raw_ops.StatelessRandomUniformV2(
            shape=tf.stack([num, 4 * blocks]),
            key=key,
            counter=counter,
            alg=1,  # 1: Philox
        )  # [num, 4 M]
        return tf.reshape(words[:, :dims], tf.concat([[num], image_shape], 0))

    noise = tf.map_fn(
        one_example, tf.cast(example_ids, tf.int64), fn_output_signature=tf.float32
    )  # [B, num, H, W, C]
    return tf.transpose(noise, tf.concat([[1, 0], tf.range(2, tf.rank(noise))], 0))


def _bounds_graph(model, x, example_ids, seed, num_samples, chunk_size, group_size, dequantize):
    """The compiled body of `bounds`: one encoder pass, a loop over sample chunks."""
    q = model.encode(x)
    noise = per_example_noise(seed, example_ids, num_samples, model.latent_dim)  # [K, B, Z]
    batch, image_shape = tf.shape(x)[0], tf.shape(x)[1:]
    chunk = max(group_size, chunk_size - chunk_size % group_size)  # whole groups per chunk
    log_sum = tf.fill([batch], -np.inf)  # running log sum_k w_k
    weight_sum = tf.zeros([batch])  # running sum_k log w_k
    group_sum = tf.zeros([batch])  # running sum over groups of their log-mean-exp
    for start in tf.range(0, num_samples, chunk):
        tf.autograph.experimental.set_loop_options(
            shape_invariants=[(t, tf.TensorShape([None])) for t in (log_sum, weight_sum, group_sum)]
        )
        size = tf.minimum(chunk, num_samples - start)
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
    num_samples = tf.cast(num_samples, tf.float32)  # a Python int or an int32 tensor
    num_groups = tf.math.floor(num_samples / group_size)
    return {
        "log_likelihood": log_sum - tf.math.log(num_samples),
        "elbo": weight_sum / num_samples,
        "iwae_bound": group_sum / num_groups - math.log(group_size),
    }


def estimate_bounds(
    model,
    x,
    example_ids,
    seed,
    num_samples,
    chunk_size=DEFAULT_CHUNK_SIZE,
    group_size=1,
    dequantize=False,
):
    """The traceable body of `bounds` (call it inside a `tf.function`, e.g. an export).

    Args as `bounds`, except num_samples may be an int32 scalar tensor and seed and example_ids
    are tensors (int64 [2], int [B]). Returns the same dict of float32 [B] nats.
    """
    return _bounds_graph(
        model, x, example_ids, seed, num_samples, chunk_size, group_size, dequantize
    )


_COMPILED = weakref.WeakKeyDictionary()  # model -> {(K, chunk, group, dequantize): tf.function}


def bounds(
    model,
    x,
    num_samples=2000,
    chunk_size=DEFAULT_CHUNK_SIZE,
    seed=None,
    example_ids=None,
    group_size=1,
    dequantize=False,
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
      num_samples: K importance samples per example.
      chunk_size: samples decoded at once per example; peak memory grows with
        chunk_size * B, not with K. Rounded down to a multiple of group_size.
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
    if num_samples < 1 or chunk_size < 1 or not 1 <= group_size <= num_samples:
        raise ValueError(
            f"Need num_samples >= 1, chunk_size >= 1 and 1 <= group_size <= num_samples; got "
            f"num_samples={num_samples}, chunk_size={chunk_size}, group_size={group_size}."
        )
    x = tf.convert_to_tensor(x, tf.float32)
    if seed is None:
        seed = np.random.default_rng().integers(0, 2**31, size=2)
    if example_ids is None:
        example_ids = tf.range(tf.shape(x)[0])
    key = (num_samples, chunk_size, group_size, bool(dequantize))
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        functions[key] = tf.function(
            lambda x, ids, seed: _bounds_graph(model, x, ids, seed, *key), reduce_retracing=True
        )
    return functions[key](x, tf.cast(example_ids, tf.int64), tf.cast(seed, tf.int64))


def log_likelihood(
    model,
    x,
    num_samples=2000,
    chunk_size=DEFAULT_CHUNK_SIZE,
    seed=None,
    example_ids=None,
    dequantize=False,
):
    """Importance-sampled log p(x), float32 [B] in nats: logsumexp_k log w_k - log K.

    x is float32 [B, H, W, C] in [0, 1]; see `bounds` for the arguments (`dequantize`: log P(v)
    + D ln 256 of a density, from below). The K samples are streamed in chunks inside one
    compiled loop, so memory is bounded by chunk_size * B.
    """
    return bounds(model, x, num_samples, chunk_size, seed, example_ids, 1, dequantize)[
        "log_likelihood"
    ]


ACTIVE_THRESHOLD = 1e-2  # a latent is active when its posterior mean's variance exceeds this


def active_units(model, dataset, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 100):
    """Burda et al.'s active units: dimensions whose posterior mean varies across the data.

    Args:
      model: a VAE; dataset: tf.data of {"image": uint8 [H, W, C]}.
      threshold: a dimension is active when Cov_x(E_q[z_i | x]) > threshold.

    Returns:
      (number of active units, activity float64 [Z] = the variance of each posterior mean).
    """
    from tfvae.evaluation import latents as analysis

    means, _ = analysis.posterior_means(model, dataset, batch_size)
    activity = np.var(means, axis=0)
    return int(np.sum(activity > threshold)), activity


def group_statistics(model, dataset, activity, seed: int = 0, batch_size: int = 100) -> dict:
    """A hierarchy's groups, top down: each one's mean KL over the dataset (one posterior draw
    per example, from `per_example_noise(seed, example index)`; nats, float list [L]), its
    latents, and its active units (of `activity`, the variances of `active_units`).

    The KL of group l is E_q[log q(z_l|x, z_<l) - log p(z_l|z_<l)]; the groups' KLs sum to
    the ELBO's KL term.
    """
    sizes = model.group_sizes()
    totals, count = np.zeros(len(sizes)), 0
    for batch in dataset.map(lambda ex: ex["image"]).batch(batch_size):
        ids = tf.range(count, count + tf.shape(batch)[0])
        noise = per_example_noise([seed, 0], ids, 1, model.latent_dim)
        x = data.to_unit_interval(batch)
        terms = model.terms_from_noise(x, model.encode(x), noise)
        totals += tf.reduce_sum(terms["kl_groups"][0], 0).numpy()
        count += int(tf.shape(batch)[0])
    bounds = np.cumsum([0] + sizes)
    return {
        "kl_nats_per_group": np.round(totals / max(count, 1), 3).tolist(),
        "latents_per_group": sizes,
        "active_units_per_group": [
            int(np.sum(activity[a:b] > ACTIVE_THRESHOLD))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ],
    }


def padded_batches(images: tf.data.Dataset, batch_size: int):
    """One pass over `images` in batches of exactly `batch_size`, the last one padded.

    Args:
      images: a finite tf.data of uint8 [H, W, C] images.
      batch_size: the global batch (a multiple of the replicas: every replica gets rows).

    Returns:
      (dataset of {"image": uint8 [B, H, W, C], "index": int64 [B] (position in `images`),
       "weight": float32 [B] (1, or 0 for padding)}, number of batches).
    """
    count = int(images.cardinality())
    num_batches = -(-count // batch_size)
    spec = images.element_spec

    def real(image, index):
        return {"image": image, "index": index, "weight": tf.constant(1.0)}

    def padding(index):
        return {"image": tf.zeros(spec.shape, spec.dtype), "index": index, "weight": 0.0}

    indexed = tf.data.Dataset.zip(images, tf.data.Dataset.range(count)).map(real)
    pad = tf.data.Dataset.range(count, num_batches * batch_size).map(padding)
    return indexed.concatenate(pad).batch(batch_size, drop_remainder=True), num_batches


_DISTRIBUTED = weakref.WeakKeyDictionary()  # model -> {(K, chunk, group, strategy): function}


def _distributed_bounds(model, strategy, key):
    """A compiled step: `_bounds_graph` on each replica's rows, gathered to the global batch."""
    functions = _DISTRIBUTED.setdefault(model, {})
    if (*key, strategy) not in functions:

        def replica(batch, seed):
            x = data.to_unit_interval(batch["image"])
            results = _bounds_graph(model, x, batch["index"], seed, *key)
            return {**results, "index": batch["index"], "weight": batch["weight"]}

        def step(batch, seed):
            results = strategy.run(replica, args=(batch, seed))
            return {k: strategy.gather(v, axis=0) for k, v in results.items()}  # [B] each

        functions[(*key, strategy)] = tf.function(step)
    return functions[(*key, strategy)]


def evaluate_split(
    config,
    vae,
    split,
    num_samples,
    num_examples=0,
    batch_size=5,
    chunk_size=DEFAULT_CHUNK_SIZE,
    seed=0,
    progress=None,
    strategy=None,
) -> dict:
    """Importance-sampled log p(x) and bounds for each example of a split, plus active units.

    Example i of the split always gets the same samples for a given seed, whatever the batch
    size, chunking, or number of replicas and workers. Under a strategy with several replicas
    (MultiWorkerMirroredStrategy: several workers) each replica estimates `batch_size` examples
    of every global batch, the last one padded, and every worker receives all results. A density
    likelihood is scored at dequantized pixels (see `bounds`), so its "log_likelihood" estimates
    log P(v) + D ln 256 from below. `progress(num_images)` is called after each batch.

    Returns:
      {"log_likelihood", "elbo", "iwae_bound": float64 [N] nats, "active_units": int,
       "activity": float64 [Z]} and, for a hierarchy, "groups" (`group_statistics`); the IWAE
      bound uses the run's training k.
    """
    from tfvae.runtime import cluster

    strategy = strategy or tf.distribute.get_strategy()
    dataset = data.load_config_split(config, split, num_examples, at_most=True)
    count = int(dataset.cardinality())
    global_batch = batch_size * strategy.num_replicas_in_sync
    batches, num_batches = padded_batches(dataset.map(lambda ex: ex["image"]), global_batch)
    iterator = iter(cluster.distribute(strategy, batches.repeat()))  # counted: no end all-reduce
    dequantize = likelihoods.is_density(config.likelihood)  # scored at (v + u) / 256
    key = (num_samples, chunk_size, min(config.k, num_samples), dequantize)
    step = _distributed_bounds(vae, strategy, key)
    out = {name: np.zeros(count) for name in ("log_likelihood", "elbo", "iwae_bound")}
    for _ in range(num_batches):
        results = step(next(iterator), tf.constant([seed, 0], tf.int64))
        real = results["weight"].numpy() > 0
        index = results["index"].numpy()[real]
        for name, values in out.items():
            values[index] = results[name].numpy()[real]
        if progress:
            progress(int(real.sum()))
    out["active_units"], out["activity"] = active_units(vae, dataset)
    if len(vae.group_sizes()) > 1:  # a hierarchy's groups
        out["groups"] = group_statistics(vae, dataset, out["activity"], seed)
    return out


def save_per_example(model_dir: str, results: dict) -> str:
    """Writes `evaluate_split`'s per-example arrays (float64 [N] nats, split order) to
    MODEL_DIR/log_likelihood_per_example.npz atomically: log_likelihood, elbo, iwae_bound."""
    arrays = {k: results[k] for k in ("log_likelihood", "elbo", "iwae_bound")}
    path = os.path.join(model_dir, files.PER_EXAMPLE_FILE)
    return files.write_atomically(path, lambda f: np.savez(f, **arrays))


def summarize(config, results, num_samples: int) -> dict:
    """The metrics.json record: NLL with its standard error, bits/dim and its convention."""
    nll = -results["log_likelihood"]
    dims = config.image_size**2 * 3
    summary = {
        "nll_nats": float(nll.mean()),
        "nll_nats_standard_error": float(nll.std(ddof=1) / math.sqrt(len(nll)))
        if len(nll) > 1
        else None,
        "elbo_nats": float(results["elbo"].mean()),
        f"iwae_{min(config.k, num_samples)}_bound_nats": float(results["iwae_bound"].mean()),
        "report_bits_per_pixel": float(bits_per_dim(nll.mean(), dims, "report", dims // 3)),
        "report_convention": "NLL * log2(e) / (H * W): per pixel, no dequantization term",
        "active_units": results["active_units"],
        "latent_dim": sum(results["groups"]["latents_per_group"])
        if "groups" in results
        else config.latent_dim,
        "k": num_samples,
        "num_images": len(nll),
        "likelihood": config.likelihood,
        "trained_with": objectives.describe_training(config),  # the estimates ignore its controls
        **results.get("groups", {}),  # a hierarchy's KL and active units per group
    }
    try:
        convention = convention_for(config.likelihood)
        summary["bits_per_dim"] = float(bits_per_dim(nll.mean(), dims, convention))
        summary["bits_per_dim_convention"] = BITS_PER_DIM_CONVENTIONS[convention]
    except ValueError as refusal:
        summary["bits_per_dim"] = None
        summary["bits_per_dim_convention"] = str(refusal)
    return summary
