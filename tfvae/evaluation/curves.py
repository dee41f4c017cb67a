"""Training curves from a run's TensorBoard event files: per-step training loss, per-epoch
validation loss (-bound), in nats per example (and bits/dim), against steps or training
minutes."""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import tensorflow as tf


def read_scalars(model_dir: str, split: str, tags) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps int [N], values float64 [N])} of the scalars `tags` from model_dir/split's
    event files, read in one pass (a tag never logged has N = 0)."""
    points = {tag: {} for tag in tags}
    for path in sorted(glob.glob(os.path.join(model_dir, split, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag in points:
                    points[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
    scalars = {}
    for tag, by_step in points.items():
        steps = np.array(sorted(by_step), np.int64)
        scalars[tag] = steps, np.array([by_step[s] for s in steps], np.float64)
    return scalars


def _clock(logged, images_per_second, batch_size: int):
    """Minutes of training steps up to each logged step: each logged interval took its steps
    times `batch_size` images at the logged rate. float64 [N]."""
    intervals = np.diff(logged, prepend=0) * batch_size / np.maximum(images_per_second, 1e-9)
    return np.cumsum(intervals) / 60.0


def _minutes_at(steps, logged, minutes) -> np.ndarray:
    """`minutes` [N] at the logged steps [N], interpolated at `steps`; NaN where none is known."""
    if not len(logged):
        return np.full(len(steps), np.nan)
    return np.interp(np.asarray(steps, np.float64), logged, minutes, left=np.nan)


def loss_curves(model_dir: str, batch_size: int | None = None) -> dict:
    """Training loss (every logged step) and validation loss (-bound, every epoch), in nats,
    and -bound in bits/dim where the run logs it (NaN otherwise); with `batch_size`, also the
    minutes of training steps (not validation, not the pauses of a resumed run) up to each logged
    and each validation step, from the logged images_per_second (`_clock`), interpolated between
    logs (NaN before the first). Each split's event files are read once."""
    train = read_scalars(model_dir, "train", ["loss", "images_per_second"])
    validation = read_scalars(model_dir, "validation", ["bound", "bound_bits_per_dim"])
    (train_steps, train_loss), (val_steps, val_bound) = train["loss"], validation["bound"]
    bits_steps, bits = validation["bound_bits_per_dim"]
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
        logged, rate = train["images_per_second"]
        minutes = _clock(logged, rate, batch_size)
        curves["train_minutes"] = _minutes_at(train_steps, logged, minutes)
        curves["validation_minutes"] = _minutes_at(val_steps, logged, minutes)
    return curves
