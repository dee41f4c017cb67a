"""Training and validation loss of several runs (the report's Figure 4), from their events.

  python tools/loss_curves.py --model_dirs=runs/celeba_vae,runs/celeba_iwae

Left: training loss per logged step; middle: validation loss (-bound) per epoch; right: the
validation loss averaged over epochs with its standard error, the comparison the report makes
where the curve is jumpy. Losses are nats per image (--bits_per_dim: the middle panel in
bits/dim); --against=minutes puts the curves on minutes of training steps, to compare models of
different speed. Writes to --output_dir.
"""

import os

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.list("model_dirs", None, "Training runs to compare.", required=True)
define.string("output_dir", "runs/loss_curves", "Where loss_curves.{png,json} go.")
define.enum(
    "against",
    "step",
    ["step", "minutes"],
    "x axis of the curves: the step, or minutes "
    "of training steps (from the logged images_per_second; no validation, no pauses).",
)
define.bool("bits_per_dim", False, "Validation in bits/dim (-bound) instead of nats per image.")


def _main(FLAGS) -> int | None:
    import matplotlib
    import numpy as np

    from tfvae.runtime import files

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfvae import config
    from tfvae.evaluation import curves as curves_lib
    from tfvae.figures import visualize

    curves = {}
    for directory in FLAGS.model_dirs:
        if not os.path.exists(os.path.join(directory, "config.json")):
            raise common.UsageError(f"--model_dirs entry {directory} has no config.json.")
        c = config.load(os.path.join(directory, "config.json"))
        curve = curves_lib.loss_curves(directory, c.batch_size)
        if FLAGS.bits_per_dim and not np.isfinite(curve["validation_bits_per_dim"]).all():
            raise common.UsageError(
                f"--bits_per_dim: {directory} logs no validation bound_bits_per_dim (its "
                f"likelihood {c.likelihood} has no bits/dim); accepted: runs that log it."
            )
        curves[f"{os.path.basename(directory.rstrip('/'))} (k={c.k})"] = curve
    x = {"step": ("train_steps", "validation_steps"), "minutes": ("train_minutes",
         "validation_minutes")}[FLAGS.against]  # fmt: skip
    validation = "validation_bits_per_dim" if FLAGS.bits_per_dim else "validation_loss"
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, curve in curves.items():
        axes[0].plot(curve[x[0]], curve["train_loss"], ".-", markersize=3, label=name)
        axes[1].plot(curve[x[1]], curve[validation], "o-", label=name)
    names = list(curves)
    axes[2].bar(
        names,
        [curves[n]["mean_validation_loss"] for n in names],
        yerr=[curves[n]["mean_validation_loss_standard_error"] for n in names],
        capsize=6,
    )
    for ax, title in zip(
        axes, ("training loss", "validation loss", "mean validation loss"), strict=True
    ):
        ax.set_title(title)
        ax.set_ylabel("nats per image")
    if FLAGS.bits_per_dim:
        axes[1].set_title("validation -bound")
        axes[1].set_ylabel("bits/dim")
    minutes = "minutes of training steps"
    axes[0].set_xlabel("step" if FLAGS.against == "step" else minutes)
    axes[1].set_xlabel("step (end of each epoch)" if FLAGS.against == "step" else minutes)
    axes[0].legend()
    late = [v for c in curves.values() for v in c["train_loss"][len(c["train_loss"]) // 20 :]]
    if late:  # the first 5% of steps (far higher) would flatten the rest of the curve
        low, high = min(late), max(late)
        margin = 0.05 * (high - low) or 0.05 * abs(high) or 1.0  # one value: a band around it
        axes[0].set_ylim(low - margin, high + margin)
        axes[0].set_title("training loss (first steps above the axis)")
    lows = [curves[n]["mean_validation_loss"] for n in names]
    errors = [curves[n]["mean_validation_loss_standard_error"] for n in names]
    low, high = min(lows) - 3 * max(errors), max(lows) + 3 * max(errors)
    pad = 0.05 * (high - low) or 1.0  # also right for negative losses (densities)
    axes[2].set_ylim(low - pad, high + pad)
    fig.tight_layout()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    files.write_atomically(
        os.path.join(FLAGS.output_dir, "loss_curves.png"),
        lambda f: fig.savefig(f, format="png", dpi=110),
    )
    visualize.log_png(
        FLAGS.output_dir, "loss_curves", os.path.join(FLAGS.output_dir, "loss_curves.png")
    )
    path = visualize.save_outputs(FLAGS.output_dir, "loss_curves", curves)
    print(f"written to {os.path.dirname(path)}")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=False)


def run() -> None:
    """The `tfvae-loss-curves` console script."""
    common.run(main)
