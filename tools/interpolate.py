"""Interpolation in latent space versus pixel space (the report's section 3.3).

  python tools/interpolate.py --model_dir=runs/quickstart [--from_images] [--spherical]

Top row: z' = alpha z0 + (1 - alpha) z1 decoded; bottom row: x' = alpha x0 + (1 - alpha) x1 with
x0, x1 the decodings of z0, z1; alpha in {0, 0.1, ..., 1}. The endpoints are two prior draws
(as in the report; --temperature=T draws them from N(0, T^2 I)) or two encoded validation
images. Writes model_dir/figures/interpolation.*.
"""

import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags

flags.DEFINE_string("model_dir", None, "A training run's directory.", required=True)
flags.DEFINE_bool("from_images", False, "Endpoints: two encoded validation images.")
flags.DEFINE_list("indices", ["0", "1"], "With --from_images: the two validation images.")
flags.DEFINE_bool("spherical", False, "Add a row of spherical (slerp) latent interpolation.")
flags.DEFINE_integer("seed", 0, "Seed of the prior draws.")
flags.DEFINE_float("temperature", 1.0, "Temperature T of the prior endpoints: z ~ N(0, T^2 I).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tfvae import data, model, visualize

    if not FLAGS.temperature > 0:
        sys.exit(f"error: Flag `--temperature` is {FLAGS.temperature}; it must be > 0.")
    try:
        config, vae, _ = model.restore(FLAGS.model_dir)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if FLAGS.from_images:
        images = data.load_config_split(config, "validation", 0)
        pair = [next(iter(images.skip(int(i)).batch(1)))["image"] for i in FLAGS.indices]
        z0, z1 = (vae.encode(data.to_unit_interval(x)).mean()[0] for x in pair)
    else:
        z0, z1 = tf.unstack(FLAGS.temperature * vae.prior.sample(2, seed=[FLAGS.seed, 0]))
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
        {"alphas": visualize.ALPHAS, "rows": labels, "z0": z0, "z1": z1,
         "temperature": None if FLAGS.from_images else FLAGS.temperature,
         "mean_abs_change_between_frames": dict(zip(labels, steps, strict=True))},
        grid, title="alpha x0 + (1 - alpha) x1: in latent space (top) and in pixel space",
        row_labels=labels, column_labels=[f"a={a:.1f}" for a in visualize.ALPHAS],
    )  # fmt: skip
    print(f"written to {path}")


if __name__ == "__main__":
    app.run(main)
