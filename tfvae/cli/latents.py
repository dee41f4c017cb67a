"""Which labelled factor each latent dimension carries (built-in factors or CelebA attributes).

  python tools/latents.py --model_dir=runs/quickstart

Posterior means of --num_images validation images against their labels: mutual information
(nats) and |correlation| per latent and factor, a heat map, the best factor of each active
dimension, and on the built-in dataset the Mutual Information Gap. Writes
model_dir/figures/latents.{png,json}.
"""

import os

import numpy as np

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.integer("num_images", 1000, "Validation images used (capped at the split).", lower_bound=2)
define.integer("bins", 20, "Bins for the mutual information estimate.")


def _main(FLAGS) -> int | None:
    import matplotlib

    from tfvae.runtime import files

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfvae import data
    from tfvae.evaluation import latents as analysis
    from tfvae.figures import visualize

    config, vae, _ = common.restore(FLAGS)
    images = data.load_config_split(config, "validation", FLAGS.num_images, at_most=True)
    common.note_capped(FLAGS.num_images, int(images.cardinality()), "num_images", "validation")
    means, labels = analysis.posterior_means(vae, images)
    if labels.shape[1] == 0:
        raise common.UsageError(f"the dataset of {FLAGS.model_dir} has no labels to compare with.")
    names = analysis.label_names(config)
    info = analysis.mutual_information(means, labels, FLAGS.bins)
    activity = means.var(0)
    order = np.argsort(-activity)[: min(20, config.latent_dim)]  # most active dims, as rows
    fig, ax = plt.subplots(figsize=(0.35 * len(names) + 3, 0.3 * len(order) + 2))
    image = ax.imshow(info[order], cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    ax.set_yticks(range(len(order)), [f"z[{d}]" for d in order], fontsize=7)
    ax.set_title("Mutual information (nats): latents vs factors", fontsize=9)
    fig.colorbar(image)
    fig.tight_layout()
    figures = os.path.join(FLAGS.model_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    files.write_atomically(
        os.path.join(figures, "latents.png"), lambda f: fig.savefig(f, format="png", dpi=110)
    )
    visualize.log_png(figures, "latents", os.path.join(figures, "latents.png"))
    numbers = {
        "factors": names,
        "best_factor_per_dim": analysis.best_factors(info, names, order),
        "activity": activity,
        "mutual_information_nats": info,
        "abs_correlation": analysis.correlations(means, labels),
        "num_images": len(means),
    }
    if config.dataset == "builtin":
        numbers["mutual_information_gap"] = analysis.mutual_information_gap(info, labels)
        print(f"MIG: {numbers['mutual_information_gap']:.3f}")
    for d, name in numbers["best_factor_per_dim"].items():
        print(f"z[{d}] (activity {activity[d]:.3f}): {name}")
    path = visualize.save_outputs(figures, "latents", numbers)
    print(f"written to {os.path.dirname(path)}")


main = common.command(
    FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases={"num_examples": "num_images"}
)


def run() -> None:
    """The `tfvae-latents` console script."""
    common.run(main)
