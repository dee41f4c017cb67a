"""Inside the latent space: posterior means of a split, codes of faces painted from chosen
factors, and which labelled factor each latent dimension carries (correlation, mutual
information, MIG; the scores of disentanglement_lib are in `disentanglement`, `interventions`)."""

from __future__ import annotations

import numpy as np

from tfvae import data
from tfvae.evaluation import disentanglement

ACTIVE_THRESHOLD = 1e-2  # a latent is active when its posterior mean's variance exceeds this


def real_images(config, count: int = 256) -> np.ndarray:
    """The first `count` validation images of a run's dataset, float32 [N, H, W, 3] in [0, 1]."""
    batch = next(iter(data.load_config_split(config, "validation", 0).batch(count)))
    return data.to_unit_interval(batch["image"]).numpy()


def label_names(config) -> list[str]:
    """Names of a run's dataset labels: the built-in factors or CelebA's 40 attributes."""
    from tfvae.data import builtin, celeba

    return list(builtin.LABEL_NAMES if config.dataset == "builtin" else celeba.ATTRIBUTE_NAMES)


def posterior_means(vae, dataset, batch_size: int = 100):
    """(E_q[z|x] float64 [N, Z], labels float64 [N, L]) over a dataset of images and labels.

    For an IAF posterior the zero-noise code stands for the mean (`Posterior.code`).
    """
    means, labels = [], []
    for batch in dataset.batch(batch_size):
        q = vae.encode(data.to_unit_interval(batch["image"]))
        means.append(q.code().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(means).astype(np.float64), np.concatenate(labels).astype(np.float64)


def builtin_representation(vae, image_size: int, batch_size: int = 500):
    """`represent(factors, rng) -> codes` of `interventions` for a model of the built-in faces:
    faces painted from factors float [n, 8] (`builtin.draw_faces`, jitter drawn from `rng` as
    the dataset draws it), resized to `image_size` as the dataset is, and encoded: the
    zero-noise codes float64 [n, Z], `batch_size` images at a time in one compiled call."""
    import tensorflow as tf

    from tfvae.data import builtin

    @tf.function(reduce_retracing=True)
    def encode(faces):  # uint8 [n, 64, 64, 3] -> zero-noise codes [n, Z]
        images = data.to_unit_interval(data.preprocess(faces, image_size))
        return vae.encode(images).code()

    def represent(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factors = np.asarray(factors, np.float32)
        jitter = builtin.sample_jitter(len(factors), rng)
        codes = []
        for start in range(0, len(factors), batch_size):
            chunk = slice(start, start + batch_size)
            codes.append(encode(builtin.draw_faces(factors[chunk], jitter[chunk])).numpy())
        return np.concatenate(codes).astype(np.float64)

    return represent


def mutual_information(latents: np.ndarray, labels: np.ndarray, bins: int = 20) -> np.ndarray:
    """Plug-in mutual information in nats between each latent and each label, float64 [Z, L],
    each column cut into `bins` equal-mass bins (a label with few values keeps them)."""
    return disentanglement.discrete_mutual_information(
        disentanglement.discretize(latents, bins, "quantile"),
        disentanglement.discretize(labels, bins, "quantile"),
    )


def mutual_information_gap(info: np.ndarray, labels: np.ndarray, bins: int = 20) -> float:
    """MIG (Chen et al. 2018) of `mutual_information`'s [Z, L]: mean over labels of the gap
    between the two most informative latents, normalised by the label's entropy; 0 (entangled)
    to 1 (each factor in one latent). `disentanglement.mutual_information_gap` is the score of
    disentanglement_lib (equal-width bins)."""
    entropies = disentanglement.discrete_entropy(
        disentanglement.discretize(labels, bins, "quantile")
    )
    return disentanglement.gap(info, entropies)


def factor_rows(means, labels, dims, bins=20, threshold=ACTIVE_THRESHOLD) -> list[tuple]:
    """The latents `dims` ordered as a traversal's rows, grouped by the factor each carries most.

    Args:
      means: posterior means float [N, Z]; labels: factors float [N, F].
      dims: the latents shown (ints in [0, Z)).
      bins, threshold: `mutual_information`'s bins; a latent is active when the variance of its
        mean exceeds `threshold` (Burda et al.'s active units).

    Returns:
      [(dim, factor index or -1 if inactive, normalised mutual information)] one per row: each
      active latent's factor is the one of largest mutual information over the factor's
      entropy (0 to 1, as in MIG); groups follow the factors' order, within a group the
      larger normalised information first; inactive latents last, the most active first.
    """
    info = mutual_information(means, labels, bins)  # [Z, F] nats
    entropy = disentanglement.discrete_entropy(disentanglement.discretize(labels, bins, "quantile"))
    normalised = info / np.where(entropy > 0, entropy, np.inf)  # [Z, F], 0 for a constant factor
    activity = means.var(0)
    rows = []
    for d in dims:
        factor = int(np.argmax(normalised[d])) if activity[d] > threshold else -1
        rows.append((int(d), factor, float(normalised[d, factor]) if factor >= 0 else 0.0))
    return sorted(rows, key=lambda r: (r[1] < 0, r[1], -r[2] if r[1] >= 0 else -activity[r[0]]))


def best_factors(info: np.ndarray, names, dims) -> dict[int, str]:
    """The label each latent in `dims` carries most information on, from mutual_information."""
    return {int(d): names[int(np.argmax(info[d]))] for d in dims}


def correlations(latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """|Pearson correlation| between each latent and each label, float64 [Z, L] (0 if constant)."""
    a = (latents - latents.mean(0)) / np.maximum(latents.std(0), 1e-12)
    b = (labels - labels.mean(0)) / np.maximum(labels.std(0), 1e-12)
    return np.abs(a.T @ b) / len(latents)
