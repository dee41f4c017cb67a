"""Train a VAE (k=1) or an IWAE (k>1) into --model_dir; rerunning the same command resumes it.

  python -m tfvae.train --flagfile=configs/iwae.flags
  tfvae-train --flagfile=configs/quickstart.flags --epochs=24

Every Config field is a flag (its help says its unit). A signal saves a checkpoint and exits 75;
rerunning continues at the saved step. With TF_CONFIG listing several workers, run the same
command on each (docs/distributed.md).
"""

from __future__ import annotations

from tfvae import config as config_lib
from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
common.define_training_flags(FLAG_DEFINITIONS)
define.string("model_dir", "runs/default", "Directory for config, checkpoints, events.")


def _main(FLAGS) -> int | None:
    from tfvae.runtime import cluster
    from tfvae.training import train

    config = config_lib.from_flags(FLAGS.values)
    try:
        metrics = train.train_and_evaluate(config, FLAGS.model_dir, FLAGS.max_steps)
    except cluster.PEER_ERRORS as error:  # another worker died or hung
        raise ValueError(cluster.describe_peer_error(error, config.collective_timeout_s)) from None
    done = bool(metrics)  # all epochs done (not stopped at --max_steps)
    if FLAGS.export and done and cluster.is_chief_task():  # run outputs: the chief only
        from tfvae.export import saved_model

        print(f"exported to {saved_model.export(FLAGS.model_dir)}", flush=True)


main = common.command(FLAG_DEFINITIONS, _main, __doc__, aliases=config_lib.DEPRECATED_FLAGS)


def run() -> None:
    """The `tfvae-train` console script."""
    common.run(main)
