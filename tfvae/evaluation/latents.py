"""Inside the latent space: posterior means of a split, and which labelled factor each latent
dimension carries (correlation, mutual information, MIG)."""

from __future__ import annotations

import numpy as np

from tfvae import data


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


def _discretize(values: np.ndarray, bins: int) -> np.ndarray:
    """Each column [N, D] -> integer bins by quantiles (a column with few values keeps them)."""
    out = np.zeros(values.shape, np.int64)
    for d in range(values.shape[1]):
        column = values[:, d]
        distinct = np.unique(column)
        if len(distinct) <= bins:
            out[:, d] = np.searchsorted(distinct, column)
        else:
            edges = np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1])
            out[:, d] = np.searchsorted(edges, column, side="right")
    return out


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(latents: np.ndarray, labels: np.ndarray, bins: int = 20) -> np.ndarray:
    """Plug-in mutual information in nats between each latent and each label, float64 [Z, L]."""
    z, v = _discretize(latents, bins), _discretize(labels, bins)
    info = np.zeros((z.shape[1], v.shape[1]))
    for i in range(z.shape[1]):
        for j in range(v.shape[1]):
            joint = np.zeros((z[:, i].max() + 1, v[:, j].max() + 1))
            np.add.at(joint, (z[:, i], v[:, j]), 1)
            info[i, j] = _entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint)
    return info


def mutual_information_gap(info: np.ndarray, labels: np.ndarray, bins: int = 20) -> float:
    """MIG (Chen et al. 2018): mean over labels of the gap between the two most informative
    latents, normalised by the label's entropy; 0 (entangled) to 1 (each factor in one latent)."""
    v = _discretize(labels, bins)
    entropies = np.array([_entropy(np.bincount(v[:, j])) for j in range(v.shape[1])])
    top_two = -np.sort(-info, axis=0)[:2]  # [2, L]
    keep = entropies > 0
    return float(np.mean((top_two[0] - top_two[1])[keep] / entropies[keep]))


def best_factors(info: np.ndarray, names, dims) -> dict[int, str]:
    """The label each latent in `dims` carries most information on, from mutual_information."""
    return {int(d): names[int(np.argmax(info[d]))] for d in dims}


def correlations(latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """|Pearson correlation| between each latent and each label, float64 [Z, L] (0 if constant)."""
    a = (latents - latents.mean(0)) / np.maximum(latents.std(0), 1e-12)
    b = (labels - labels.mean(0)) / np.maximum(labels.std(0), 1e-12)
    return np.abs(a.T @ b) / len(latents)
