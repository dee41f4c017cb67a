"""A whole split evaluated: each example's log p(x), ELBO and IWAE-k bound over padded batches
on every replica (`evaluate_split`), active units and a hierarchy's per-group statistics, the
per-example file and the metrics.json summary with bits/dim (`summarize`).
"""

from __future__ import annotations

import math
import os
import weakref

import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.evaluation import DEFAULT_CHUNK_SIZE, bounds, units
from tfvae.evaluation.latents import ACTIVE_THRESHOLD
from tfvae.evaluation.noise import per_example_noise
from tfvae.models import likelihoods, objectives
from tfvae.runtime import files


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
    edges = np.cumsum([0] + sizes)
    return {
        "kl_nats_per_group": np.round(totals / max(count, 1), 3).tolist(),
        "latents_per_group": sizes,
        "active_units_per_group": [
            int(np.sum(activity[a:b] > ACTIVE_THRESHOLD))
            for a, b in zip(edges[:-1], edges[1:], strict=True)
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
    """A compiled step: `bounds.estimate_bounds` on each replica's rows, gathered to the global
    batch."""
    functions = _DISTRIBUTED.setdefault(model, {})
    if (*key, strategy) not in functions:

        def replica(batch, seed):
            x = data.to_unit_interval(batch["image"])
            results = bounds.estimate_bounds(model, x, batch["index"], seed, *key)
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
    k,
    num_images=0,
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
    log P(v) + D ln 256 from below. `progress(images)` is called after each batch with the
    number of images it held. A chunk that cannot fit in memory is refused before any work
    (`bounds.check_chunk`; clipped to K otherwise).

    Returns:
      {"log_likelihood", "elbo", "iwae_bound": float64 [N] nats, "active_units": int,
       "activity": float64 [Z]} and, for a hierarchy, "groups" (`group_statistics`); the IWAE
      bound uses the run's training k.
    """
    from tfvae.runtime import cluster

    strategy = strategy or tf.distribute.get_strategy()
    chunk_size = bounds.check_run_chunk(config, vae.latent_dim, k, batch_size, chunk_size)
    dataset = data.load_config_split(config, split, num_images, at_most=True)
    count = int(dataset.cardinality())
    global_batch = batch_size * strategy.num_replicas_in_sync
    batches, num_batches = padded_batches(dataset.map(lambda ex: ex["image"]), global_batch)
    iterator = iter(cluster.distribute(strategy, batches.repeat()))  # counted: no end all-reduce
    dequantize = likelihoods.is_density(config.likelihood)  # scored at (v + u) / 256
    key = (k, chunk_size, min(config.k, k), dequantize)
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


def summarize(config, results, k: int) -> dict:
    """The metrics.json record of `evaluate_split`'s results with K samples: NLL in nats with
    its standard error, bits/dim and its convention (None and why for a Bernoulli)."""
    nll = -results["log_likelihood"]
    dims = config.num_dims
    summary = {
        "nll_nats": float(nll.mean()),
        "nll_nats_standard_error": float(nll.std(ddof=1) / math.sqrt(len(nll)))
        if len(nll) > 1
        else None,
        "elbo_nats": float(results["elbo"].mean()),
        f"iwae_{min(config.k, k)}_bound_nats": float(results["iwae_bound"].mean()),
        "report_bits_per_pixel": float(units.bits_per_dim(nll.mean(), dims, "report", dims // 3)),
        "report_convention": "NLL * log2(e) / (H * W): per pixel, no dequantization term",
        "active_units": results["active_units"],
        "latent_dim": sum(results["groups"]["latents_per_group"])
        if "groups" in results
        else config.latent_dim,
        "k": k,
        "num_images": len(nll),
        "likelihood": config.likelihood,
        "trained_with": objectives.describe_training(config),  # the estimates ignore its controls
        **results.get("groups", {}),  # a hierarchy's KL and active units per group
    }
    convention = units.convention_or_none(config.likelihood)
    bits = units.bits_per_dim(nll.mean(), dims, convention) if convention else None
    summary["bits_per_dim"] = None if bits is None else float(bits)
    summary["bits_per_dim_convention"] = units.describe_convention(config.likelihood)
    return summary
