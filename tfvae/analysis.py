"""Numbers behind the figures: training curves from event files, upsampling comparison,
which labelled factor each latent dimension carries (correlation, mutual information, MIG)."""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import tensorflow as tf

from tfvae import data, visualize


def read_scalars(model_dir: str, split: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps int [N], values float64 [N]) of one scalar from model_dir/split's event files."""
    points = {}
    for path in sorted(glob.glob(os.path.join(model_dir, split, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    steps = np.array(sorted(points), np.int64)
    return steps, np.array([points[s] for s in steps], np.float64)


def loss_curves(model_dir: str) -> dict:
    """Training loss (every logged step) and validation loss (-bound, every epoch), in nats."""
    train_steps, train_loss = read_scalars(model_dir, "train", "loss")
    val_steps, val_bound = read_scalars(model_dir, "validation", "bound")
    val_loss = -val_bound
    sem = val_loss.std(ddof=1) / math.sqrt(len(val_loss)) if len(val_loss) > 1 else 0.0
    return {
        "train_steps": train_steps, "train_loss": train_loss,
        "validation_steps": val_steps, "validation_loss": val_loss,
        "mean_validation_loss": float(val_loss.mean()) if len(val_loss) else float("nan"),
        "mean_validation_loss_standard_error": float(sem),
    }  # fmt: skip


def upsampling_comparison(
    runs, real_images, num_samples: int = 256, seed: int = 0, temperature: float = 1.0
) -> dict:
    """Samples of each run from the same prior draws, and their checkerboard energy.

    Args:
      runs: [(name, config, vae)]; all with the same latent size.
      real_images: float32 [N, H, W, 3] in [0, 1], the reference checkerboard level of data.
      temperature: T of the prior draws, z = T eps (N(0, T^2 I) for the default prior).

    Returns:
      {"samples": float32 [runs, num_samples, H, W, 3], "checkerboard": {name: (mean, sem)},
       "data_checkerboard": (mean, sem)}.
    """
    latent_dims = {config.latent_dim for _, config, _ in runs}
    if len(latent_dims) != 1:
        raise ValueError(f"The runs have latent sizes {sorted(latent_dims)}; they must match.")
    if not temperature > 0:
        raise ValueError(f"Flag `--temperature` is {temperature}; it must be > 0.")
    z = temperature * runs[0][2].prior.sample(num_samples, seed=[seed, 0])
    samples = np.stack([vae.sample(z=z).numpy() for _, _, vae in runs])

    def mean_sem(images):
        energy = visualize.checkerboard_energy(images)
        return float(energy.mean()), float(energy.std(ddof=1) / math.sqrt(len(energy)))

    return {
        "samples": samples,
        "checkerboard": {name: mean_sem(s) for (name, _, _), s in zip(runs, samples, strict=True)},
        "data_checkerboard": mean_sem(real_images),
    }


def real_images(config, count: int = 256) -> np.ndarray:
    """The first `count` validation images of a run's dataset, float32 [N, H, W, 3] in [0, 1]."""
    batch = next(iter(data.load_config_split(config, "validation", 0).batch(count)))
    return data.to_unit_interval(batch["image"]).numpy()


def label_names(config) -> list[str]:
    """Names of a run's dataset labels: the built-in factors or CelebA's 40 attributes."""
    from tfvae.data import builtin, celeba

    return list(builtin.LABEL_NAMES if config.dataset == "builtin" else celeba.ATTRIBUTE_NAMES)


def posterior_means(vae, dataset, batch_size: int = 100):
    """(E_q[z|x] float64 [N, Z], labels float64 [N, L]) over a dataset of images and labels."""
    means, labels = [], []
    for batch in dataset.batch(batch_size):
        means.append(vae.encode(data.to_unit_interval(batch["image"])).mean().numpy())
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
