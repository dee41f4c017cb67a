"""The epoch loop: counted train steps from one infinite iterator, and the validation pass.

The training batches of all epochs come from one infinite, distributed iterator, and each epoch
takes exactly its number of steps from it: a finite iterator would cost an all-reduce per batch
to agree on its end. Every pipeline is sharded by DATA: each worker builds the same global
batches and keeps its replicas' rows, so the global batch and its order are those of one worker.
"""

from __future__ import annotations

import functools
import sys
import time

import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.evaluation import split, units
from tfvae.runtime import cluster
from tfvae.runtime.stopping import Stopped
from tfvae.training.steps import learning_rate_at

SHUFFLE_SEED_STRIDE = 1_000_003  # epoch e of seed s is shuffled with s * stride + e


def train_batches(config, strategy, images: tf.data.Dataset, epoch: int, skip: int):
    """An infinite iterator of distributed uint8 [B, H, W, C] batches from (epoch, skip).

    Epochs `epoch`..config.epochs - 1 of data.batches (a full shuffle seeded by (seed, e),
    the last partial batch dropped) follow each other; the first `skip` batches of the starting
    epoch are skipped, so a resumed run continues at its exact data position.
    """
    epochs = [
        data.batches(
            images,
            config.batch_size,
            shuffle_seed=config.seed * SHUFFLE_SEED_STRIDE + e,
            skip_batches=skip if e == epoch else 0,
        )
        for e in range(epoch, max(config.epochs, epoch + 1))
    ]
    chained = functools.reduce(tf.data.Dataset.concatenate, epochs).repeat()  # infinite
    return iter(cluster.distribute(strategy, chained))


def validation_batches(config, strategy, images: tf.data.Dataset):
    """(infinite iterator of distributed padded batches, batches per pass over the split)."""
    batches, num_batches = split.padded_batches(images, config.batch_size)
    return iter(
        cluster.distribute(strategy, batches.repeat().prefetch(tf.data.AUTOTUNE))
    ), num_batches


def train_epoch(config, steps, batches, steps_per_epoch, outputs, stop, max_steps) -> bool:
    """Runs the rest of the current epoch; False if it stopped at max_steps (checkpoint saved).

    A stop request rides in each step's all-reduce; the loop reads it one step late (so it never
    waits for the device), and every worker stops after the same step.

    Raises:
      Stopped: after saving a checkpoint, when any worker received SIGINT/SIGTERM.
    """
    epoch, start, step = int(steps.epoch), int(steps.step_in_epoch), int(steps.step)
    progress = _progress_bar(config, epoch, steps_per_epoch, start) if outputs.is_chief else None
    try:
        pending, previous, last_time = [], None, time.perf_counter()
        for in_epoch in range(start + 1, steps_per_epoch + 1):
            seed = tf.constant([config.seed, step], tf.int64)
            result = steps.train_step(next(batches), seed, stop.flag())
            step += 1
            pending.append(result)
            if len(pending) == config.log_every_steps or in_epoch == steps_per_epoch:
                last_time = _report(config, steps, pending, step, last_time, outputs, progress)
                pending = []
            agreed = previous is not None and float(previous["stop"]) > 0
            if agreed or (max_steps is not None and step >= max_steps):
                return _stop_early(steps, outputs, stop, step, in_epoch, pending, agreed, progress)
            previous = result
        if previous is not None and float(previous["stop"]) > 0:  # carried by the epoch's last step
            return _stop_early(steps, outputs, stop, step, steps_per_epoch, [], True, progress)
        if progress:
            progress.close()
        steps.step.assign(step)
        return True
    except BaseException:  # an error's line must not land inside the bar's line
        if progress:
            progress.close()
        raise


def _stop_early(steps, outputs, stop, step, in_epoch, pending, agreed, progress) -> bool:
    if pending:
        mean_scalars(pending, step)  # never save after a non-finite loss
    if progress:
        progress.close()
    steps.step.assign(step)
    steps.step_in_epoch.assign(in_epoch)
    outputs.save_checkpoint(step)
    if agreed:
        raise Stopped.at_checkpoint(stop.signal_name or "another worker's signal", step)
    return False


def _report(config, steps, pending, step, last_time, outputs, progress) -> float:
    now = time.perf_counter()
    scalars = mean_scalars(pending, step)
    scalars["images_per_second"] = len(pending) * config.batch_size / (now - last_time)
    scalars["learning_rate"] = learning_rate_at(steps.learning_rate, step)  # a plain int
    outputs.scalars("train", step, scalars)
    if progress:
        progress.update(len(pending))
        progress.set_postfix(
            loss=f"{scalars['loss']:.1f}", img_s=f"{scalars['images_per_second']:.0f}"
        )
    return now


def mean_scalars(pending, step) -> dict:
    """Means of the step outputs since the last report; stops on a non-finite loss, unless
    updates are guarded by --skip_gradient_norm (such a step's update was skipped: the means are
    then over the finite steps)."""
    names = [k for k in pending[0] if k != "stop"]
    guarded = "skipped_updates" in pending[0]
    scalars = {}
    for k in names:
        values = np.array([float(p[k]) for p in pending])
        finite = values[np.isfinite(values)] if guarded else values
        scalars[k] = float(finite.mean()) if finite.size else float("nan")
    if guarded:
        scalars["skipped_updates"] = float(pending[-1]["skipped_updates"])  # a running count
    if not np.isfinite(scalars["loss"]) and not guarded:
        raise FloatingPointError(
            f"The loss became non-finite by step {step}; training stopped and the last good "
            "checkpoint is kept."
        )
    return scalars


def _progress_bar(config, epoch, total, start):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0,
    )


def validate(config, steps, batches, num_batches: int, outputs) -> dict:
    """IWAE-k bound and ELBO (nats and bits/dim) over the whole validation split.

    Each example's noise derives from (seed, its index in the split), so the result is the same
    on any number of replicas and workers (to float32 round-off in the sums).
    """
    sums = {}
    seed = tf.constant([config.seed, -1], tf.int64)
    for _ in range(num_batches):
        for k, v in steps.eval_step(next(batches), seed).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count")
    metrics = {k: v / count for k, v in sums.items()}
    convention = units.convention_or_none(config.likelihood)
    if convention:
        for name in ("bound", "elbo"):
            metrics[f"{name}_bits_per_dim"] = float(
                units.bits_per_dim(-metrics[name], config.num_dims, convention)
            )
    outputs.scalars("validation", int(steps.step), metrics)
    return metrics
