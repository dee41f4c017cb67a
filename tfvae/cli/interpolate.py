"""Interpolation in latent space versus pixel space (the report's section 3.3).

  python tools/interpolate.py --model_dir=runs/quickstart [--from_images] [--spherical]

Top row: z' = alpha z0 + (1 - alpha) z1 decoded; bottom row: x' = alpha x0 + (1 - alpha) x1 with
x0, x1 the decodings of z0, z1; alpha in {0, 0.1, ..., 1}. The endpoints are two prior draws
(as in the report; --temperature=T draws them from N(0, T^2 I)), two draws of a fitted sampler
(--sampler=NAME) or two encoded validation images. For a hierarchy only --group moves (the top
group by default; -1 every group). Writes model_dir/figures/interpolation.*.
"""

import os

import numpy as np

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.bool("from_images", False, "Endpoints: two encoded validation images.")
define.list("indices", ["0", "1"], "With --from_images: the two validation images.")
define.bool("spherical", False, "Add a row of spherical (slerp) latent interpolation.")
define.integer("seed", 0, "Seed of the drawn endpoints.")
define.float(
    "temperature", 1.0, "Temperature T of the drawn endpoints: z ~ N(0, T^2 I) for the prior.",
    lower_bound=1e-6,
)  # fmt: skip
define.string("sampler", "prior", "Where drawn endpoints come from: prior, or a sampler fitted "
              "by tfvae-fit-sampler (its name).")  # fmt: skip
define.integer("group", 0, common.GROUP_HELP + " Only it moves: the second endpoint is the first "
               "with that group's code taken from the second.", lower_bound=-1)  # fmt: skip


def _main(FLAGS) -> int | None:
    import tensorflow as tf

    from tfvae import data
    from tfvae.figures import visualize

    config, vae, checkpoint = common.restore(FLAGS)
    if FLAGS.from_images:
        images = data.load_config_split(config, "validation", 0)
        indices = common.int_list(FLAGS, "indices", 0, int(images.cardinality()))
        if len(indices) != 2:
            raise common.UsageError(f"Flag `--indices` has {len(indices)} values; it takes two.")
        pair = [next(iter(images.skip(i).batch(1)))["image"] for i in indices]

        z0, z1 = (vae.encode(data.to_unit_interval(x)).code()[0] for x in pair)
    else:
        from tfvae.samplers import store

        draw = store.code_draws(FLAGS.model_dir, FLAGS.sampler, vae, checkpoint)
        z0, z1 = tf.unstack(draw(2, [FLAGS.seed, 0], FLAGS.temperature))
    low, high = common.group_slice(FLAGS, vae)  # a hierarchy's top group by default
    z1 = tf.concat([z0[:low], z1[low:high], z0[high:]], 0)  # the group's code moves, no other
    rows = [visualize.latent_interpolation(vae, z0, z1)]
    labels = ["latent"]
    if FLAGS.spherical:
        rows.append(visualize.latent_interpolation(vae, z0, z1, spherical=True))
        labels.append("latent (slerp)")
    ends = vae.sample(z=tf.stack([z0, z1]))
    rows.append(visualize.pixel_interpolation(ends[0], ends[1]))
    labels.append("pixel")
    grid = np.stack([r.numpy() for r in rows])
    steps = np.abs(np.diff(grid, axis=1)).mean(axis=(2, 3, 4))  # [rows, A - 1]
    path = visualize.save_outputs(
        os.path.join(FLAGS.model_dir, "figures"), "interpolation",
        {"alphas": visualize.ALPHAS, "rows": labels, "group": FLAGS.group, "z0": z0, "z1": z1,
         "temperature": None if FLAGS.from_images else FLAGS.temperature,
         "sampler": None if FLAGS.from_images else FLAGS.sampler,
         "mean_abs_change_between_frames": dict(zip(labels, steps, strict=True))},
        grid, title="alpha x0 + (1 - alpha) x1: in latent space (top) and in pixel space",
        row_labels=labels, column_labels=[f"a={a:.1f}" for a in visualize.ALPHAS],
    )  # fmt: skip
    print(f"written to {path}")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True)


def run() -> None:
    """The `tfvae-interpolate` console script."""
    common.run(main)
