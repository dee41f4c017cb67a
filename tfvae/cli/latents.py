"""Which labelled factor each latent dimension carries (built-in factors or CelebA attributes).

  python tools/latents.py --model_dir=runs/quickstart

Posterior means of --num_images validation images against their labels: mutual information
(nats) and |correlation| per latent and factor, a heat map, the best factor of each active
dimension, and on the built-in dataset the Mutual Information Gap. Writes
model_dir/figures/latents.{png,json}.

  python tools/latents.py --model_dir=runs/quickstart --scores=all

adds the disentanglement scores of disentanglement_lib (mig, dci, sap, modularity, explicitness
on the same images; beta_vae and factor_vae on faces painted with one factor held fixed, built-in
dataset only): a table, and metrics.json's "disentanglement".
"""

import os
import time

import numpy as np

from tfvae.cli import common

SCORES = ("mig", "dci", "sap", "modularity", "explicitness", "beta_vae", "factor_vae")
PAINTED = ("beta_vae", "factor_vae")  # scores that paint faces from chosen factors

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.integer("num_images", 1000, "Validation images used (capped at the split).", lower_bound=2)
define.integer("bins", 20, "Bins for the mutual information estimate and the scores.")
define.list("scores", [], "Disentanglement scores: all, or some of " + ", ".join(SCORES) + ".")
define.integer("seed", 0, "The scores' train/test splits, classifiers and painted faces.")
define.integer(
    "score_points", 200, "beta_vae, factor_vae: batches of 64 faces to fit on, half as many "
    "to test; factor_vae's spread of each latent from 64 per point (at most 10,000 faces).",
    lower_bound=1,
)  # fmt: skip


def _main(FLAGS) -> int | None:
    import matplotlib

    from tfvae.runtime import files

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfvae import data
    from tfvae.evaluation import latents as analysis
    from tfvae.figures import visualize

    config, vae, _ = common.restore(FLAGS)
    wanted = _wanted_scores(FLAGS, config)
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
    if wanted:
        _scores(FLAGS, config, vae, wanted, means, labels)


def _wanted_scores(FLAGS, config) -> list[str]:
    """The scores --scores names, in SCORES order; one line for an unknown one, or for a
    painted score asked for by name on a dataset that is not painted from its factors."""
    asked = FLAGS.scores
    unknown = sorted(set(asked) - {"all", *SCORES})
    if unknown:
        raise common.UsageError(
            f"Flag `--scores` has {','.join(unknown)}; accepted: all or some of "
            f"{', '.join(SCORES)}."
        )
    wanted = [name for name in SCORES if "all" in asked or name in asked]
    if config.dataset != "builtin":
        named = [name for name in PAINTED if name in asked]
        if named:
            raise common.UsageError(
                f"Flag `--scores` has {','.join(named)}: these paint images with one factor "
                f"held fixed, which only the built-in dataset can; {config.dataset} cannot."
            )
        if any(name in PAINTED for name in wanted):
            print(
                "note: beta_vae and factor_vae need faces painted from chosen factors, which "
                f"only the built-in dataset has; {config.dataset} is scored without them."
            )
        wanted = [name for name in wanted if name not in PAINTED]
    return wanted


def _scores(FLAGS, config, vae, wanted, means, labels) -> None:
    """Computes, prints and merges into metrics.json the scores `wanted`."""
    from tfvae.evaluation import disentanglement
    from tfvae.runtime import files

    seed, bins = FLAGS.seed, FLAGS.bins
    points = {"num_train": FLAGS.score_points, "num_eval": max(1, FLAGS.score_points // 2)}
    with disentanglement.unconverged_fits() as unconverged:
        values = _compute(FLAGS, config, vae, wanted, means, labels, points)
    print(f"disentanglement scores ({len(means)} validation images, {bins} bins, seed {seed}):")
    for name, value in values.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {name:<28} {shown:>8}")
    if unconverged:
        print(
            f"note: {len(unconverged)} scikit-learn fit(s) stopped at their iteration cap before "
            f"converging ({unconverged[0]}); their scores are those of the unconverged fit."
        )
    settings = {"num_images": len(means), "bins": bins, "seed": seed, **points}
    settings["unconverged_fits"] = len(unconverged)
    path = os.path.join(FLAGS.model_dir, "metrics.json")
    files.merge_metrics(path, {"disentanglement": {**values, "settings": settings}})
    print(f"written to {path}")


def _compute(FLAGS, config, vae, wanted, means, labels, points) -> dict:
    """The scores `wanted`, one at a time, each announced with its work and timed."""
    from tfvae.data import builtin
    from tfvae.evaluation import disentanglement, interventions, latents

    seed, bins = FLAGS.seed, FLAGS.bins
    variance_draws = min(10_000, 64 * FLAGS.score_points)  # factor_vae: latents' spread
    faces = {"beta_vae": 2 * 64, "factor_vae": 64}
    if any(name in PAINTED for name in wanted):
        represent = latents.builtin_representation(vae, config.image_size)
    values = {}
    for name in wanted:
        if name in PAINTED:
            count = faces[name] * (points["num_train"] + points["num_eval"])
            count += variance_draws if name == "factor_vae" else 0
            work = f"painting and encoding {count:,} faces"
        else:
            work = f"on {len(means)} codes" + (", a boosted-trees classifier per factor"
                                               if name == "dci" else "")  # fmt: skip
        print(f"scoring {name} ({work})...", end=" ", flush=True)
        start = time.monotonic()
        if name == "beta_vae":
            values.update(
                interventions.beta_vae_score(builtin.sample_factors, represent, seed, **points)
            )
        elif name == "factor_vae":
            values.update(
                interventions.factor_vae_score(
                    builtin.sample_factors, represent, seed,
                    num_variance_estimate=variance_draws, **points,
                )
            )  # fmt: skip
        else:
            values.update(disentanglement.scores(means, labels, [name], bins, seed))
        print(f"{time.monotonic() - start:.0f} s", flush=True)
    return values


main = common.command(
    FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases={"num_examples": "num_images"}
)


def run() -> None:
    """The `tfvae-latents` console script."""
    common.run(main)
