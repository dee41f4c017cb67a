"""Latent traversals (the report's section 3.2): one latent coordinate varied per row.

  python tools/traverse.py --model_dir=runs/quickstart [--dims=3,7] [--image_index=0]

Rows are the most active latent dimensions by default (posterior-mean variance over the data;
among a hierarchy's --group, the top one by default); on a labelled dataset they are grouped by
the factor each carries most (largest mutual information over the factor's entropy, shown beside
it), factors in their order, inactive latents last. Each is varied over --range around the encoding
of a validation image, or around the zero-noise code of the prior (its mean for N(0, I)) or of
a fitted sampler (--sampler=NAME). Writes model_dir/figures/traversal.{png,json} and the same
image to TensorBoard.
"""

import os

import numpy as np

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.list("dims", [], "Latent dimensions, one per row (default: the most active).")
define.integer("num_dims", 8, "Rows when --dims is not given.", lower_bound=1)
define.float("range", 3.0, "Each coordinate goes from -range to +range (latent units).")
define.integer("steps", 11, "Images per row.", lower_bound=2)
define.integer(
    "image_index", -1, "Validation image to start from (-1: the --sampler's code at zero noise).",
    lower_bound=-1,
)  # fmt: skip
define.string("sampler", "prior", "With --image_index=-1, where the start comes from: prior, or "
              "a sampler fitted by tfvae-fit-sampler (its name).")  # fmt: skip
define.integer("seed", 0, "Seed of the start's mixture component (mixture priors and samplers).")
define.integer("group", 0, common.GROUP_HELP + " Rows: its most active latents.", lower_bound=-1)


def _main(FLAGS) -> int | None:
    from tfvae import data
    from tfvae.evaluation import latents as analysis
    from tfvae.figures import visualize

    config, vae, checkpoint = common.restore(FLAGS)
    shown_from = max(500, FLAGS.image_index + 1)  # activity over 500 images, or up to the start
    images = data.load_config_split(config, "validation", shown_from, at_most=True)
    available = int(images.cardinality())
    if FLAGS.image_index >= available:
        raise common.UsageError(
            f"Flag `--image_index` is {FLAGS.image_index}; accepted: -1 (a drawn start) or an "
            f"image of the validation split, 0 to {available - 1}."
        )
    means, labels = analysis.posterior_means(vae, images)
    activity = means.var(axis=0)  # Burda et al.'s activity: Cov_x(E_q[z_i])
    dims = common.int_list(FLAGS, "dims", 0, vae.latent_dim)  # a hierarchy: its flat code
    low, high = common.group_slice(FLAGS, vae)  # by default a hierarchy's top group
    dims = dims or (low + np.argsort(-activity[low:high])[: FLAGS.num_dims]).tolist()
    if FLAGS.image_index >= 0:
        example = next(iter(images.skip(FLAGS.image_index).batch(1)))
        centre = vae.encode(data.to_unit_interval(example["image"])).code()[0]
    else:  # a draw at temperature 0: the prior mean 0 for N(0, I), a component's mean for a
        # mixture, the flow's image of the zero noise
        from tfvae.samplers import store

        draw = store.code_draws(FLAGS.model_dir, FLAGS.sampler, vae, checkpoint)
        centre = np.asarray(draw(1, [FLAGS.seed, 0], 0.0))[0]
    values = np.linspace(-FLAGS.range, FLAGS.range, FLAGS.steps).astype(np.float32)
    factors, information = {}, {}
    if labels.shape[1]:  # name each row by the factor its latent carries most, grouped by it
        rows = analysis.factor_rows(means, labels, dims)
        dims = dims if FLAGS.dims else [d for d, _, _ in rows]  # --dims: the order asked for
        names = analysis.label_names(config)
        factors = {d: names[f] if f >= 0 else "inactive" for d, f, _ in rows}
        information = {d: round(value, 4) for d, f, value in rows if f >= 0}
    grid = visualize.traversal(vae, centre, dims, values)
    start = f"image {FLAGS.image_index}"
    if FLAGS.image_index < 0:
        start = "the prior mean" if FLAGS.sampler == "prior" and config.prior == "normal" else (
            f"the {FLAGS.sampler}'s zero-noise code")  # fmt: skip
    path = visualize.save_outputs(
        os.path.join(FLAGS.model_dir, "figures"), "traversal",
        {"dims": dims, "group": FLAGS.group, "values": values, "activity": activity[dims],
         "start": start, "centre": centre,
         "sampler": None if FLAGS.image_index >= 0 else FLAGS.sampler,
         "best_factor": {d: factors[d] for d in dims if d in factors},
         "normalised_mutual_information": information},
        grid, title=f"Traversals around {start}: one latent coordinate per row "
                    "(its value in latent units above each column)",
        row_labels=[f"z[{d}]" + _factor_label(d, factors, information) for d in dims],
        column_labels=[f"{v:+.1f}" for v in values],
    )  # fmt: skip
    print(f"written to {path}")


def _factor_label(dim: int, factors: dict, information: dict) -> str:
    """A row's second line: its factor and normalised mutual information, 'inactive', or ''."""
    if dim not in factors:
        return ""
    return f"\n{factors[dim]}" + (f" {information[dim]:.2f}" if dim in information else "")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True)


def run() -> None:
    """The `tfvae-traverse` console script."""
    common.run(main)
