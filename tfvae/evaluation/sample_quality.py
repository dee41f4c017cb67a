"""Sample quality: Frechet distances, FID features, the metrics of a run, prior diagnostics.

- Frechet distance (Heusel et al. 2017): the squared 2-Wasserstein distance between Gaussians
  fitted (mean, covariance) to two sets of features; FID when the features are InceptionV3's
  2048 pool features. It is biased upwards with few samples: compare runs at the same N.
- For the built-in faces, the same distance in the 128 features of a small classifier trained
  to read the 8 generative factors (evaluation.factor_classifier), like "FID with a LeNet" on MNIST,
  and that classifier's factor accuracy on reconstructions and on samples.
- Diagnostics of why prior samples can fail when reconstructions do not: the aggregate
  posterior's moments against N(0, I) (`aggregate_posterior`), and decoding prior draws with
  batch statistics instead of the moving ones (`decode_with_batch_statistics`).

Images are float32 [N, H, W, 3] in [0, 1]; features and statistics are float64.
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.evaluation import factor_classifier as factors
from tfvae.models import base
from tfvae.samplers import store
from tfvae.samplers.gaussian import REPORTED, aggregate_posterior, decode_with_batch_statistics

# ---------------------------------------------------------------------------- Frechet distance


def samples_key(sampler: str, temperature) -> str:
    """The key of a sampler's decoded draws at temperature T (a number or one per group):
    'samples_t{T}' of the prior's, 'samples_{sampler}_t{T}' of a fitted sampler's, T named by
    `base.temperature_name`. Metrics and figures carry it."""
    name = base.temperature_name(temperature)
    return f"samples_t{name}" if sampler == "prior" else f"samples_{sampler}_t{name}"


_SAMPLES_KEY = re.compile(r"samples_(?:([a-z]+)_)?t(\d+\.\d+(?:_\d+\.\d+)*)(_batch_statistics)?")


def row_label(key: str) -> str:
    """The row label of an image set's key: 'prior T=1.0' of samples_t1.0, 'flow T=1.0:0.6' of
    samples_flow_t1.0_0.6 (one T per group, top down), 'validation' of validation."""
    match = _SAMPLES_KEY.fullmatch(key)
    if not match:
        return key.replace("samples_", "").replace("_", " ")
    sampler, temperature, batch_statistics = match.groups()
    label = f"{sampler or 'prior'} T={temperature.replace('_', ':')}"
    return label + (", batch statistics" if batch_statistics else "")


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean float64 [F] and covariance float64 [F, F] (unbiased, ddof=1) of features [N, F]."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"Features must be [N >= 2, F]; got shape {features.shape}.")
    return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """||m1 - m2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)), float, in squared feature units.

    tr((C1 C2)^(1/2)) is computed as tr((C1^(1/2) C2 C1^(1/2))^(1/2)), a similar matrix that is
    symmetric PSD, so its square root is real by construction (eigh, eigenvalues clipped at 0)
    instead of taking the real part of a general sqrtm. Exact for singular covariances too.
    """
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    difference = mean1 - mean2
    distance = difference @ difference + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root
    return float(max(distance, 0.0))


def frechet_distance_of_features(features1, features2) -> float:
    """Frechet distance between Gaussians fitted to features [N1, F] and [N2, F]."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


# ---------------------------------------------------------------------------- feature extractors

INCEPTION_SIZE = 299


def inception_network(weights: str | None = "imagenet") -> keras.Model:
    """InceptionV3 up to its 2048 average-pooled features, input [N, 299, 299, 3] in [-1, 1].

    Args:
      weights: 'imagenet' (Keras downloads them on first use, then caches them under
        ~/.keras/models), a path to the no-top weights file, or None (random; tests only).
    """
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise ValueError(f"Flag `--inception_weights` is {weights!r}; no such file.")
    return keras.applications.InceptionV3(
        include_top=False,
        weights=weights,
        pooling="avg",
        input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
    )


def extract_features(network, images, batch_size: int = 50) -> np.ndarray:
    """Features of images through a network with a fixed input size, float64 [N, F].

    Args:
      network: a Keras model with input [None, S, S, 3] in [-1, 1] (as keras.applications'
        preprocess_input in 'tf' mode gives) returning [N, F].
      images: float [N, H, W, 3] in [0, 1]; resized bilinearly to S x S, in batches.
    """
    size = network.input_shape[1:3]
    parts = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start : start + batch_size], tf.float32)
        resized = tf.image.resize(batch, size, method="bilinear", antialias=True)
        parts.append(np.asarray(network(resized * 2.0 - 1.0, training=False), np.float64))
    return np.concatenate(parts)


def inception_or_reason(mode: str, weights: str = "") -> tuple[keras.Model | None, str]:
    """InceptionV3 for FID, or None and why not.

    Args:
      mode: 'on' (failure to get the weights is an error), 'auto' (then FID is skipped) or 'off'.
      weights: a path to InceptionV3's no-top ImageNet weights, or '' to let Keras download
        them on first use (cached under ~/.keras/models).
    """
    if mode not in ("on", "auto", "off"):
        raise ValueError(f"Flag `--fid` is {mode!r}; accepted: on, auto, off.")
    if mode == "off":
        return None, "--fid=off"
    try:
        return inception_network(weights or "imagenet"), ""
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 (a failed download shows as several types)
        reason = f"InceptionV3 weights unavailable ({type(error).__name__}: {error})"
        if mode == "on":
            raise ValueError(f"{reason}; pass --inception_weights=PATH.") from error
        return None, reason + "; pass --inception_weights=PATH or run once online"


# ---------------------------------------------------------------------------- diagnostics


def _in_batches(function, array, batch_size: int = 250) -> np.ndarray:
    return np.concatenate(
        [np.asarray(function(array[i : i + batch_size])) for i in range(0, len(array), batch_size)]
    )


def _aggregate_of(vae, images, batch_size: int = 250) -> dict:
    """`aggregate_posterior` of the posteriors of images float32 [N, H, W, 3] in [0, 1]: each
    one's mean and scale (`Posterior.top_group`; an IAF posterior, which has no closed-form
    moments, gives one draw from noise of seed [i, 7] for its mean, with scale 0)."""
    means, scales = [], []
    for i in range(0, len(images), batch_size):
        q = vae.encode(images[i : i + batch_size])
        eps = tf.random.stateless_normal(tf.shape(q.code()), [i, 7], alg="philox")
        mean, scale, _ = q.top_group(eps)
        means.append(mean), scales.append(scale)
    return aggregate_posterior(np.concatenate(means), np.concatenate(scales))


SPLITS = ("validation", "train")  # the real sets compared: samples are scored against validation


def image_sets(config, vae, num_images: int, temperatures, seed: int = 0, samplers=None):
    """The images compared: real, reconstructed, sampled and the diagnostic decodings.

    `temperatures`: each a number or one T per latent group top down (a tuple,
    `LatentVariableModel.latent_temperatures`), named in keys by `base.temperature_name` ('1.0',
    '1.0_0.8_0.6'). `samplers` maps a name to a fitted sampler (tfvae.samplers) whose codes are
    decoded at each temperature as 'samples_{name}_t{T}' (seed [seed, 3]; the sampler draws a
    hierarchy's top group, or the top groups it was fitted to, at the top T, the prior the
    groups below at theirs); the name 'prior'
    (or no samplers) keeps the prior's sets below.

    Returns:
      (sets, labels, diagnostics): sets maps a name to float32 [N, H, W, 3] in [0, 1]:
      'validation' and 'train' (the first N of each split), 'reconstructions' (of the
      validation images), 'samples_t{T}' (z = T * eps, the same eps for every T),
      'samples_t1.0_batch_statistics' (batch norm in training mode, over batches of
      batch_size * k codes as in training) and
      'samples_aggregate_gaussian' (z from the moment-matched aggregate posterior of the train
      images); labels maps 'validation' and 'train' to their labels [N, L]; diagnostics holds
      `aggregate_posterior` of the train images. A hierarchical model has neither diagnostic
      (no batch norm; no one code per image), only the prior's and the samplers' sets.
    """
    splits = {s: data.load_config_split(config, s, num_images, at_most=True) for s in SPLITS}
    count = min(int(images.cardinality()) for images in splits.values())  # N <= num_images
    if count < 2:
        raise ValueError(f"The splits have {count} image(s); sample quality needs >= 2.")
    sets, labels = {}, {}
    for split, images in splits.items():  # the first N of each: equal sets for the distances
        batch = next(iter(images.take(count).batch(count)))
        sets[split] = data.to_unit_interval(batch["image"]).numpy()
        labels[split] = batch["labels"].numpy() if "labels" in batch else None
    sets["reconstructions"] = _in_batches(vae.reconstruct, sets["validation"])
    samplers = {"prior": None} if samplers is None else samplers
    hierarchical = config.architecture == "hierarchical"
    if "prior" in samplers:
        eps = vae.prior.sample(count, [seed, 2]).numpy()  # [N, Z], T = 1
        for temperature in temperatures:  # the same draws' noise at every T
            scale = vae.latent_temperatures(temperature)
            z = vae.prior.sample(count, [seed, 2], scale).numpy()
            sets[samples_key("prior", temperature)] = _in_batches(lambda c: vae.sample(z=c), z)
        if not hierarchical:  # the hierarchy has no batch norm
            sets["samples_t1.0_batch_statistics"] = decode_with_batch_statistics(
                vae, eps, config.batch_size * config.k
            )
    for name, sampler in samplers.items():
        for temperature in temperatures if name != "prior" else ():
            z = store.sampler_codes(vae, sampler, count, [seed, 3], temperature).numpy()
            sets[samples_key(name, temperature)] = _in_batches(lambda c: vae.sample(z=c), z)
    if hierarchical:  # no one posterior mean per image: its groups depend on those above
        return sets, labels, {}
    aggregate = _aggregate_of(vae, sets["train"])
    noise = np.random.default_rng(seed).standard_normal([count, config.latent_dim])
    z = aggregate["mean"] + noise @ np.linalg.cholesky(aggregate["covariance"]).T  # [N, Z]
    sets["samples_aggregate_gaussian"] = _in_batches(
        lambda c: vae.sample(z=c), z.astype(np.float32)
    )
    return sets, labels, {"aggregate_posterior": aggregate}


def _frechet_distances(prefix: str, embed, sets: dict) -> dict:
    """`prefix`_NAME: the Frechet distance of each set's features to the validation images'."""
    reference = gaussian_statistics(embed(sets["validation"]))
    return {
        f"{prefix}_{name}": frechet_distance(*gaussian_statistics(embed(images)), *reference)
        for name, images in sets.items()
        if name != "validation"
    }


def _factor_metrics(classifier, sets: dict, labels: dict, train_images, train_labels) -> dict:
    """Factor accuracy on real and reconstructed images (their own labels) and, for every set
    but train, against the labels of each image's pixel-nearest train image."""
    bins, names = classifier.bins, factors.label_names()
    by_set = {}
    metrics = {}
    own = {"validation": labels["validation"], "reconstructions": labels["validation"]}
    for name, images in sets.items():
        predicted = classifier.predict_bins(images)
        if name in own:
            by_set[name] = factors.factor_accuracy(predicted, own[name], bins)
            metrics[f"factor_accuracy_{name}"] = float(by_set[name].mean())
        if name != "train":
            nearest, distance = factors.nearest_labels(images, train_images, train_labels)
            accuracy = factors.factor_accuracy(predicted, nearest, bins)
            by_set[f"nearest_{name}"] = accuracy
            metrics[f"nearest_factor_accuracy_{name}"] = float(accuracy.mean())
            metrics[f"nearest_train_rms_{name}"] = float(distance.mean())
    metrics["factor_accuracy_by_factor"] = {
        name: dict(zip(names, np.round(values, 4).tolist(), strict=True))
        for name, values in by_set.items()
    }
    return metrics


def sample_quality(
    config, vae, num_images=1000, temperatures=(1.0, 0.7), seed=0, classifier=None, inception=None,
    samplers=None,
):  # fmt: skip
    """Frechet distances, factor accuracies and prior diagnostics of a trained VAE.

    Args:
      config, vae: a run's Config and its restored VAE.
      num_images: N, images of every set (the Frechet distance's bias depends on N: compare
        runs at the same N).
      temperatures: temperatures T of the samples (the prior's `sample`: z = T eps, eps ~ N(0, I)
        for the prior N(0, I); each sampler's own meaning of T).
      seed: seed of eps and of the aggregate-Gaussian draws.
      classifier: a factor_classifier.FactorClassifier (built-in faces only) or None.
      inception: `inception_network(...)` for FID, or None.
      samplers: {name: fitted sampler} drawn beside (or, without 'prior', instead of) the prior.

    Returns:
      (metrics, sets): metrics a JSON-ready dict (distances in squared feature units, accuracies
      in [0, 1], KLs in nats); sets the images of `image_sets`, float32 [N, H, W, 3] in [0, 1].
    """
    sets, labels, diagnostics = image_sets(config, vae, num_images, temperatures, seed, samplers)
    metrics = {
        "sample_quality_num_images": len(sets["validation"]),
        "sample_quality_seed": seed,
    }
    if "aggregate_posterior" in diagnostics:
        aggregate = diagnostics["aggregate_posterior"]
        metrics["aggregate_posterior"] = {
            k: np.round(np.asarray(aggregate[k], np.float64), 4).tolist() for k in REPORTED
        }
    if inception is not None:
        metrics.update(_frechet_distances("fid", lambda x: extract_features(inception, x), sets))
    if classifier is not None:
        metrics.update(_frechet_distances("factor_fd", classifier.embed, sets))
        train_images, train_labels = factors.builtin_split(
            config.data_dir, "train", config.image_size
        )
        metrics.update(_factor_metrics(classifier, sets, labels, train_images, train_labels))
    return metrics, sets
