"""Training curves from a run's TensorBoard event files: per-step training loss, per-epoch
validation loss (-bound), in nats per example (and bits/dim), against steps or training
minutes."""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import tensorflow as tf


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


def training_minutes(model_dir: str, batch_size: int, steps) -> np.ndarray:
    """Minutes of training steps (not validation, not the pauses of a resumed run) up to each
    of `steps`, from the logged images_per_second: each logged interval took its steps times
    `batch_size` images at that rate. float64 [len(steps)], interpolated between logs."""
    logged, rate = read_scalars(model_dir, "train", "images_per_second")
    if not len(logged):
        return np.full(len(steps), np.nan)
    intervals = np.diff(logged, prepend=0) * batch_size / np.maximum(rate, 1e-9)
    minutes = np.cumsum(intervals) / 60.0
    return np.interp(np.asarray(steps, np.float64), logged, minutes, left=np.nan)


def loss_curves(model_dir: str, batch_size: int | None = None) -> dict:
    """Training loss (every logged step) and validation loss (-bound, every epoch), in nats,
    and -bound in bits/dim where the run logs it (NaN otherwise); with `batch_size`, also the
    training minutes at each logged and each validation step (`training_minutes`)."""
    train_steps, train_loss = read_scalars(model_dir, "train", "loss")
    val_steps, val_bound = read_scalars(model_dir, "validation", "bound")
    bits_steps, bits = read_scalars(model_dir, "validation", "bound_bits_per_dim")
    val_loss = -val_bound
    bits_per_dim = np.interp(val_steps, bits_steps, bits) if len(bits) else val_loss * np.nan
    sem = val_loss.std(ddof=1) / math.sqrt(len(val_loss)) if len(val_loss) > 1 else 0.0
    curves = {
        "train_steps": train_steps, "train_loss": train_loss,
        "validation_steps": val_steps, "validation_loss": val_loss,
        "validation_bits_per_dim": bits_per_dim,
        "mean_validation_loss": float(val_loss.mean()) if len(val_loss) else float("nan"),
        "mean_validation_loss_standard_error": float(sem),
    }  # fmt: skip
    if batch_size:
        curves["train_minutes"] = training_minutes(model_dir, batch_size, train_steps)
        curves["validation_minutes"] = training_minutes(model_dir, batch_size, val_steps)
    return curves
