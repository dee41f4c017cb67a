"""Training curves from a run's TensorBoard event files: per-step training loss, per-epoch
validation loss (-bound), in nats per example."""

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
