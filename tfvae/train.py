"""Train a VAE (k=1) or an IWAE (k>1): `python -m tfvae.train --flagfile=configs/iwae.flags`.

One code path for one CPU, one GPU or many devices: the train and eval steps are `tf.function`s
run under a `tf.distribute` strategy, the global batch split across replicas and the loss scaled
by the global batch. Randomness is stateless, derived from (seed, step), so a resumed run
replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from tfvae import config as config_lib
from tfvae import data, evaluate, model, visualize
from tfvae.steps import Steps

NUM_SHOWN = 8  # images shown in reconstruction and sample summaries, one row each
EXIT_STOPPED = 75  # exit code of a run stopped by a signal with a checkpoint saved: resumable


class Stopped(Exception):  # noqa: N818 (a resumable stop, not an error)
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; rerunning resumes it.

    Attributes:
      signal_name: 'SIGINT' or 'SIGTERM'.
      step: the optimizer step of the saved checkpoint.
    """

    def __init__(self, signal_name: str, step: int):
        super().__init__(
            f"{signal_name}: checkpoint saved at step {step}; rerun the same command to resume."
        )
        self.signal_name = signal_name
        self.step = step


def compute_dtype(config) -> str:
    """The Keras dtype policy name of `config.mixed_precision` on this machine."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (7, 0):
            return "mixed_float16"
    return "float32"


def make_strategy(config) -> tf.distribute.Strategy:
    """Default strategy on one device; MirroredStrategy over all GPUs (or logical CPUs)."""
    gpus = tf.config.list_logical_devices("GPU")
    if config.strategy == "default" or (config.strategy == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def check_model_dir(config, model_dir: str) -> None:
    """Refuses a model_dir made with a different config (run-control fields excepted)."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return
    differing = config_lib.differences(config_lib.load(path), config)
    if differing:
        raise ValueError(
            f"{model_dir} holds a run with another config; use a new --model_dir or the saved "
            f"flags. Differing fields: {'; '.join(differing)}."
        )


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the training loop checks after each step."""

    def __init__(self):
        self.signal_name = None

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self):
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _write_scalars(writer, step, scalars):
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def _write_images(writer, steps: Steps, shown, prior_draws, step):
    """Inputs beside reconstructions, and samples from fixed prior draws (comparable over time)."""
    inputs = data.to_unit_interval(shown)  # [N, H, W, C]
    rows = tf.concat([inputs, steps.model.reconstruct(inputs)], axis=0)  # [2N, H, W, C]
    with writer.as_default(step=step):
        tf.summary.image("inputs_and_reconstructions", visualize.image_grid(rows, len(inputs)))
        tf.summary.image(
            "samples_from_fixed_prior_draws",
            visualize.image_grid(steps.model.sample(z=prior_draws), NUM_SHOWN),
        )


def _describe(config, steps: Steps, compute: str) -> str:
    m = steps.model
    return (
        f"tfvae: {config.upsampling} decoder, {config.likelihood} likelihood, k={config.k}, "
        f"{config.image_size}x{config.image_size}, latent {config.latent_dim}, width "
        f"{config.width}; parameters: encoder {m.encoder.count_params():,}, decoder "
        f"{m.decoder.count_params():,}; {steps.strategy.num_replicas_in_sync} replica(s), "
        f"{compute}"
    )


def train_and_evaluate(config, model_dir: str, max_steps: int | None = None) -> dict:
    """Trains (or resumes) the run in `model_dir`, validating every epoch.

    Args:
      config: tfvae.config.Config.
      model_dir: where config.json, checkpoints and TensorBoard event files go.
      max_steps: stop after this many optimizer steps in total (None: run all epochs); the
        checkpoint then holds the exact data position, so a rerun continues seamlessly.

    Returns:
      Validation metrics of the last epoch: per-example nats and bits/dim. Stopping at
      `max_steps` returns {} (no validation).

    Raises:
      Stopped: on SIGINT/SIGTERM, after saving a checkpoint.
    """
    check_model_dir(config, model_dir)
    strategy = make_strategy(config)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"Flag `--batch_size` is {config.batch_size}; it must be divisible by the "
            f"{strategy.num_replicas_in_sync} replicas."
        )
    train_data = data.load_config_split(config, "train", config.train_size)
    val_data = data.load_config_split(config, "validation", config.val_size)
    steps_per_epoch = int(train_data.cardinality()) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"The training set has {int(train_data.cardinality())} examples, fewer than one "
            f"batch of {config.batch_size}."
        )
    compute = compute_dtype(config)
    keras.utils.set_random_seed(config.seed)
    steps = Steps(config, strategy, compute)
    config_lib.save(config, os.path.join(model_dir, "config.json"))
    manager = tf.train.CheckpointManager(
        steps.checkpoint, model_dir, max_to_keep=config.checkpoints_to_keep
    )
    if manager.latest_checkpoint:
        steps.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    print(_describe(config, steps, compute), flush=True)

    writers = {
        s: tf.summary.create_file_writer(os.path.join(model_dir, s))
        for s in ("train", "validation")
    }
    if int(steps.step) == 0:
        with writers["train"].as_default(step=0):
            tf.summary.text(
                "config",
                tf.constant("\n".join(f"    {k} = {v}" for k, v in config.to_dict().items())),
            )
    shown = next(iter(val_data.batch(NUM_SHOWN).take(1)))["image"]
    prior_draws = config.sample_temperature * model.standard_normal(config.latent_dim).sample(
        NUM_SHOWN * 2, seed=[config.seed, 1]
    )  # [2 NUM_SHOWN, Z], z ~ N(0, T^2 I)
    stop = _StopRequest()
    metrics = {}
    with stop.installed():
        while int(steps.epoch) < config.epochs:
            finished = _train_epoch(
                config,
                steps,
                train_data,
                steps_per_epoch,
                writers["train"],
                manager,
                stop,
                max_steps,
            )
            if not finished:
                return metrics
            epoch = int(steps.epoch) + 1  # completed epochs
            metrics = _validate(config, steps, val_data, writers["validation"])
            if epoch % config.images_every_epochs == 0 or epoch == config.epochs:
                _write_images(writers["validation"], steps, shown, prior_draws, int(steps.step))
            steps.epoch.assign(epoch)
            steps.step_in_epoch.assign(0)
            manager.save(checkpoint_number=int(steps.step))
    if not metrics:  # the run had already finished: report it
        metrics = _validate(config, steps, val_data, writers["validation"])
    print(_summary(config, model_dir, metrics), flush=True)
    return metrics


def _train_epoch(config, steps, train_data, steps_per_epoch, writer, manager, stop, max_steps):
    """Runs the rest of the current epoch; False if stopped early (checkpoint saved).

    The counters live in Python during the epoch (reading a variable every step would make the
    loop wait for the device) and are written to their variables before each save.
    """
    epoch, start, step = int(steps.epoch), int(steps.step_in_epoch), int(steps.step)
    batches = data.batches(
        train_data.map(lambda ex: ex["image"]),
        config.batch_size,
        shuffle_seed=config.seed * 1_000_003 + epoch,
        skip_batches=start,
    )
    progress = _progress_bar(config, epoch, steps_per_epoch, start)
    pending, last_time = [], time.perf_counter()
    for in_epoch, images in enumerate(
        steps.strategy.experimental_distribute_dataset(batches), start + 1
    ):
        pending.append(steps.train_step(images, tf.constant([config.seed, step], tf.int64)))
        step += 1
        if len(pending) == config.log_every_steps or in_epoch == steps_per_epoch:
            now = time.perf_counter()
            scalars = _mean_scalars(pending, step)
            scalars["images_per_second"] = len(pending) * config.batch_size / (now - last_time)
            scalars["learning_rate"] = config.learning_rate
            _write_scalars(writer, step, scalars)
            progress.update(len(pending))
            progress.set_postfix(
                loss=f"{scalars['loss']:.1f}", img_s=f"{scalars['images_per_second']:.0f}"
            )
            pending, last_time = [], now
        if stop.signal_name or (max_steps is not None and step >= max_steps):
            if pending:
                _mean_scalars(pending, step)  # never save after a non-finite loss
            steps.step.assign(step)
            steps.step_in_epoch.assign(in_epoch)
            manager.save(checkpoint_number=step)
            progress.close()
            if stop.signal_name:
                raise Stopped(stop.signal_name, step)
            return False
    progress.close()
    steps.step.assign(step)
    return True


def _mean_scalars(pending, step) -> dict:
    """Means of the step outputs since the last report; stops on a non-finite loss."""
    scalars = {k: float(np.mean([p[k] for p in pending])) for k in pending[0]}
    if not np.isfinite(scalars["loss"]):
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


def _validate(config, steps, val_data, writer) -> dict:
    """IWAE-k bound and ELBO (nats and bits/dim) on the whole validation split."""
    sums = {}
    batches = data.batches(
        val_data.map(lambda ex: ex["image"]), config.batch_size, drop_remainder=False
    )
    for i, images in enumerate(steps.strategy.experimental_distribute_dataset(batches)):
        for k, v in steps.eval_step(images, tf.constant([config.seed, -1 - i], tf.int64)).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop("count")
    metrics = {k: v / count for k, v in sums.items()}
    if config.likelihood != "bernoulli":
        convention = evaluate.convention_for(config.likelihood)
        dims = config.image_size**2 * 3
        for name in ("bound", "elbo"):
            metrics[f"{name}_bits_per_dim"] = float(
                evaluate.bits_per_dim(-metrics[name], dims, convention)
            )
    _write_scalars(writer, int(steps.step), metrics)
    return metrics


def _summary(config, model_dir, metrics) -> str:
    bound = f"IWAE-{config.k} bound" if config.k > 1 else "ELBO"
    lines = [f"validation {bound}: {metrics.get('bound', float('nan')):.2f} nats/image"]
    if "bound_bits_per_dim" in metrics:
        lines[0] += f" ({metrics['bound_bits_per_dim']:.4f} bits/dim, an upper bound on NLL)"
    lines.append(
        f"written to {model_dir}: config.json, checkpoints, TensorBoard events "
        f"(tensorboard --logdir {model_dir})"
    )
    return "\n".join(lines)


def main(argv):
    del argv
    try:
        config = config_lib.from_flags(flags.FLAGS)
        metrics = train_and_evaluate(config, flags.FLAGS.model_dir, flags.FLAGS.max_steps)
        if flags.FLAGS.export and metrics:  # all epochs done (not stopped at --max_steps)
            from tfvae import export

            print(f"exported to {export.export(flags.FLAGS.model_dir)}", flush=True)
    except Stopped as stopped:
        print(stopped, flush=True)
        sys.exit(EXIT_STOPPED)
    except (ValueError, NotImplementedError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def define_flags():
    config_lib.define_flags()
    flags.DEFINE_string("model_dir", "runs/default", "Directory for config, checkpoints, events.")
    flags.DEFINE_integer("max_steps", None, "Stop after this many steps in total (resumable).")
    flags.DEFINE_bool(
        "export", False, "After the last epoch, export a SavedModel to MODEL_DIR/export/<next>/."
    )


if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
