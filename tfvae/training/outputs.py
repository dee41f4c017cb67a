"""What a run writes: config.json, TensorBoard events, images, checkpoints, the final summary.

Only the chief writes into model_dir. Every worker makes the same calls (so collectives stay in
step); on the others the writers are no-ops and checkpoints go to a temporary directory that is
deleted after each save (variables may need all workers to take part in a save, as TF's
multi-worker guide says). After each save a barrier holds every worker until the chief's
checkpoint is complete, so no worker ever reads a checkpoint that is still being written.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile

import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae.runtime import cluster, files


def image_grid(images: tf.Tensor, columns: int) -> tf.Tensor:
    """Tiles images into one picture.

    Args:
      images: float [N, H, W, C] in [0, 1]; N a multiple of `columns`.
      columns: images per row.

    Returns:
      float32 [1, (N / columns) H, columns W, C] in [0, 1], for tf.summary.image.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    n, h, w, c = images.shape
    rows = n // columns
    grid = tf.reshape(images[: rows * columns], [rows, columns, h, w, c])
    grid = tf.transpose(grid, [0, 2, 1, 3, 4])  # [rows, H, columns, W, C]
    return tf.reshape(grid, [1, rows * h, columns * w, c])


NUM_SHOWN = 8  # images shown in reconstruction and sample summaries, one row each


class RunOutputs:
    """The files of one run in `model_dir`, written by the chief only.

    Args:
      config: tfvae.config.Config.
      model_dir: the run's directory (shared by all workers).
      role: this process's cluster.Role.
      steps: the run's tfvae.training.steps.Steps (its checkpoint and strategy).
    """

    def __init__(self, config, model_dir: str, role: cluster.Role, steps):
        self.config, self.model_dir, self.role, self.steps = config, model_dir, role, steps
        self.is_chief = role.is_chief
        if self.is_chief:
            self.writers = {
                s: tf.summary.create_file_writer(os.path.join(model_dir, s))
                for s in ("train", "validation")
            }
            directory = model_dir
        else:
            self.writers = {s: tf.summary.create_noop_writer() for s in ("train", "validation")}
            directory = tempfile.mkdtemp(prefix="tfvae-worker-checkpoint-")
        self._checkpoint_dir = directory
        self.manager = tf.train.CheckpointManager(
            steps.checkpoint, directory, max_to_keep=config.checkpoints_to_keep
        )

    def save_config(self) -> None:
        """Writes config.json (chief) and, at step 0, the config as TensorBoard text."""
        if not self.is_chief:
            return
        config_lib.save(self.config, os.path.join(self.model_dir, "config.json"))
        if int(self.steps.step) == 0:
            text = "\n".join(f"    {k} = {v}" for k, v in self.config.to_dict().items())
            with self.writers["train"].as_default(step=0):
                tf.summary.text("config", tf.constant(text))

    def scalars(self, split: str, step: int, scalars: dict) -> None:
        """float scalars under their names in the split's events (chief only)."""
        with self.writers[split].as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)

    def images(self, shown, prior_draws, step: int) -> None:
        """Inputs above reconstructions, and samples from fixed prior draws (chief only).

        shown: uint8 [N, H, W, C] validation images; prior_draws: float32 [M, Z].
        """
        if not self.is_chief:
            return
        vae = self.steps.eval_model  # the EMA's weights when there is one
        inputs = data.to_unit_interval(shown)  # [N, H, W, C]
        rows = tf.concat([inputs, vae.reconstruct(inputs)], axis=0)  # [2N, H, W, C]
        with self.writers["validation"].as_default(step=step):
            tf.summary.image("inputs_and_reconstructions", image_grid(rows, len(inputs)))
            tf.summary.image(
                "samples_from_fixed_prior_draws",
                image_grid(vae.sample(z=prior_draws), NUM_SHOWN),
            )

    def save_checkpoint(self, step: int) -> None:
        """Saves the whole state on every worker (only the chief's is kept); then a barrier."""
        os.makedirs(self._checkpoint_dir, exist_ok=True)
        try:
            self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as error:
            if not files.is_disk_full(error):
                raise
            for partial in glob.glob(os.path.join(self._checkpoint_dir, f"ckpt-{step}_temp*")):
                shutil.rmtree(partial, ignore_errors=True)  # the unfinished save
            path = os.path.join(self._checkpoint_dir, f"ckpt-{step}")
            raise files.DiskFullError(
                errno.ENOSPC,
                files.describe_disk_full(path) + " The last good checkpoint is kept; free space "
                "and rerun the same command to resume from it.",
            ) from None
        if not self.is_chief:
            shutil.rmtree(self._checkpoint_dir, ignore_errors=True)
        cluster.barrier(self.steps.strategy)

    def after_training(self, metrics: dict) -> None:
        """The run's outputs after the last epoch, on the chief only: the summary lines.

        (Anything else a finished run produces, such as an export, belongs here.)
        """
        if not self.is_chief:
            return
        print(summary(self.config, self.model_dir, metrics), flush=True)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.flush()
        if not self.is_chief:
            shutil.rmtree(self._checkpoint_dir, ignore_errors=True)


def summary(config, model_dir: str, metrics: dict) -> str:
    """The lines printed at the end of a run: the validation bound and where files went."""
    bound = f"IWAE-{config.k} bound" if config.k > 1 else "ELBO"
    lines = [f"validation {bound}: {metrics.get('bound', float('nan')):.2f} nats/image"]
    if "bound_bits_per_dim" in metrics:
        lines[0] += f" ({metrics['bound_bits_per_dim']:.4f} bits/dim, an upper bound on NLL)"
    lines.append(
        f"written to {model_dir}: config.json, checkpoints, TensorBoard events "
        f"(tensorboard --logdir {model_dir})"
    )
    return "\n".join(lines)
