"""Training a VAE (k=1) or an IWAE (k>1): `train_and_evaluate(config, model_dir)`.

One code path for one CPU, one GPU, several GPUs or several machines: the train and eval steps
are `tf.function`s run under a `tf.distribute` strategy (runtime.cluster), the global batch split
across replicas and the loss scaled by the global batch. Randomness is stateless, derived from
(seed, step), so a resumed run replays exactly what an uninterrupted one would have done.

The parts, in the order of a run:
  setup (here)          strategy, role, data, Steps, restore, the workers' agreement
  tfvae.training.loop            the epoch loop: counted train steps, the stop protocol, validation
  tfvae.training.outputs         config.json, events, images, checkpoints, the summary (chief only)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae.models import vae as model
from tfvae.runtime import cluster
from tfvae.runtime.files import DirectoryLock
from tfvae.runtime.stopping import Stopped, StopRequest  # noqa: F401 (public: train.Stopped)
from tfvae.training import loop
from tfvae.training.outputs import NUM_SHOWN, RunOutputs
from tfvae.training.steps import Steps

make_strategy = cluster.make_strategy  # public: train.make_strategy(config)


def compute_dtype(config) -> str:
    """The Keras dtype policy name of `config.mixed_precision` on this machine."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (7, 0):
            return "mixed_float16"
    return "float32"


def check_model_dir(config, model_dir: str) -> None:
    """Refuses a model_dir made with a different config (run-control fields excepted)."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return
    differing = config_lib.differences(
        config_lib.load(path), config, ignore=config_lib.RESUMABLE_FIELDS
    )
    if differing:
        raise ValueError(
            f"{model_dir} holds a run with another config; use a new --model_dir or the saved "
            f"flags. Differing fields: {'; '.join(differing)}."
        )


@dataclasses.dataclass
class _Run:
    """What setup hands to the loop."""

    config: config_lib.Config
    steps: Steps
    outputs: RunOutputs
    train_data: tf.data.Dataset
    val_data: tf.data.Dataset
    steps_per_epoch: int


def train_and_evaluate(config, model_dir: str, max_steps: int | None = None) -> dict:
    """Trains (or resumes) the run in `model_dir`, validating every epoch.

    Under MultiWorkerMirroredStrategy every worker calls this with the same arguments; only the
    chief writes into `model_dir`, which all workers share (they restore from it).

    Args:
      config: tfvae.config.Config.
      model_dir: where config.json, checkpoints and TensorBoard event files go.
      max_steps: stop after this many optimizer steps in total (None: run all epochs); the
        checkpoint then holds the exact data position, so a rerun continues seamlessly.

    Returns:
      Validation metrics of the last epoch: per-example nats and bits/dim. Stopping at
      `max_steps` returns {} (no validation).

    Raises:
      Stopped: on SIGINT/SIGTERM to any worker, after all saved one checkpoint at one step.
      ValueError: a bad config, or workers that disagree on it (before anything is written).
      LockHeldError: another process is writing `model_dir` (one writer at a time; the chief's
        lock, so the workers of one multi-worker run are not refused).
    """
    check_model_dir(config, model_dir)  # before the lock: a refused model_dir stays untouched
    stop = StopRequest()
    writer = DirectoryLock(model_dir, "training") if cluster.is_chief_task() else None
    with writer or contextlib.nullcontext(), stop.installed():
        run = _setup(config, model_dir, max_steps, stop)
        try:
            return _train(run, stop, max_steps)
        finally:
            run.outputs.close()


def _setup(config, model_dir, max_steps, stop) -> _Run:
    """Strategy, data, state restored from the newest readable checkpoint; checked, then saved."""
    strategy = make_strategy(config)
    stop.install()  # after the strategy, whose coordination service takes SIGTERM for itself
    role = cluster.role(strategy)
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
    total_steps = steps_per_epoch * config.epochs
    dataset_size = int(train_data.cardinality())
    steps = Steps(config, strategy, compute, total_steps=total_steps, dataset_size=dataset_size)
    checkpoint = model.newest_readable_checkpoint(model_dir)
    if checkpoint:
        steps.checkpoint.restore(checkpoint).assert_existing_objects_matched()
        print(f"resuming from {checkpoint} (step {int(steps.step)})", flush=True)
    shared = {k: v for k, v in config.to_dict().items() if k != "data_dir"}  # a local cache
    restored = os.path.basename(checkpoint) if checkpoint else None
    agreed = dict(shared, compute_dtype=compute, max_steps=max_steps, checkpoint=restored)
    cluster.check_agreement(strategy, role, agreed)
    outputs = RunOutputs(config, model_dir, role, steps)
    outputs.save_config()
    print(_describe(config, steps, compute, role), flush=True)
    return _Run(config, steps, outputs, train_data, val_data, steps_per_epoch)


def _train(run: _Run, stop, max_steps) -> dict:
    """The epochs: train, validate, images, checkpoint; then the run's outputs (chief)."""
    config, steps, outputs = run.config, run.steps, run.outputs
    strategy = steps.strategy
    shown = next(iter(run.val_data.batch(NUM_SHOWN).take(1)))["image"]

    def prior_draws():  # [2 NUM_SHOWN, Z] from fixed noise; a learned prior's as it is now
        return steps.eval_model.prior.sample(NUM_SHOWN * 2, [config.seed, 1], config.temperature)

    images = run.train_data.map(lambda ex: ex["image"])
    batches = loop.train_batches(
        config, strategy, images, int(steps.epoch), int(steps.step_in_epoch)
    )
    val_images = run.val_data.map(lambda ex: ex["image"])
    val_batches, num_val_batches = loop.validation_batches(config, strategy, val_images)
    metrics = {}
    while int(steps.epoch) < config.epochs:
        args = (config, steps, batches, run.steps_per_epoch, outputs, stop, max_steps)
        if not loop.train_epoch(*args):
            return metrics
        epoch = int(steps.epoch) + 1  # completed epochs
        metrics = loop.validate(config, steps, val_batches, num_val_batches, outputs)
        if epoch % config.images_every_epochs == 0 or epoch == config.epochs:
            outputs.images(shown, prior_draws(), int(steps.step))
        steps.epoch.assign(epoch)
        steps.step_in_epoch.assign(0)
        outputs.save_checkpoint(int(steps.step))
    if not metrics:  # the run had already finished: report it
        metrics = loop.validate(config, steps, val_batches, num_val_batches, outputs)
    outputs.after_training(metrics)  # run outputs after training: the chief only
    return metrics


def _describe(config, steps: Steps, compute: str, role: cluster.Role) -> str:
    m = steps.model
    prior_parameters = sum(
        int(tf.size(v)) for v in m.prior.trainable_variables
    )  # fmt: skip
    if config.architecture == "hierarchical":
        model = (
            f"hierarchical VAE, latent groups {config.latent_groups} of {config.latent_channels} "
            f"channels ({m.latent_dim} latents), width {config.width}"
        )
    else:
        model = (
            f"{config.upsampling} decoder, latent {config.latent_dim}, width {config.width}, "
            f"prior {config.prior}, posterior {config.posterior}"
        )
    line = (
        f"tfvae: {model}, {config.likelihood} likelihood, k={config.k}, "
        f"{config.image_size}x{config.image_size}; parameters: "
        f"encoder {m.encoder.count_params():,}, decoder {m.decoder.count_params():,}, prior "
        f"{prior_parameters:,}"
        + (
            f", discriminator {steps.discriminator.count_params():,}"
            if steps.discriminator is not None
            else ""
        )
        + (f"; objective {config.objective}" if config.objective != "vae" else "")
        + f"; {steps.strategy.num_replicas_in_sync} replica(s), "
        f"{compute}"
    )
    if role.num_workers > 1:
        line += f"; {role}" + ("" if role.is_chief else ", writing nothing to model_dir")
    return line
