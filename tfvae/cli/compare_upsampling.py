"""Decoder upsampling compared (the report's section 2): samples and a checkerboard measure.

  python tools/compare_upsampling.py --model_dirs=runs/deconv,runs/nearest,runs/bilinear

Decodes the same prior draws through every run (or, with --sampler, each run's own fitted
sampler's draws of one seed), side by side
with an enlarged crop, and gives each run's checkerboard energy (share of spectral energy at the
Nyquist frequencies) beside that of real images. Also draws how many kernel taps of a stride-2
transposed convolution land on each output pixel (the report's section 2.2). Writes to --output_dir.
"""

import os

import numpy as np

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.list("model_dirs", None, "Training runs to compare.", required=True)
define.string("output_dir", "runs/compare_upsampling", "Where figures and JSON go.")
define.integer("num_shown", 6, "Samples shown per run.")
define.integer("num_images", 256, "Prior samples behind each checkerboard measure.", lower_bound=2)
define.integer("seed", 0, "Seed of the shared prior draws.")
define.float("temperature", 1.0, "Temperature T of the draws: z ~ N(0, T^2 I) for the prior.")
define.string("sampler", "prior", "Where the codes come from: prior (the first run's, through "
              "every decoder) or a sampler fitted by tfvae-fit-sampler to each run (its name; each "
              "run decodes its own sampler's draws of the same seed).")  # fmt: skip
define.string("name", "upsampling_samples", "File name (no extension) of the samples figure.")
define.string(
    "title",
    "The same prior draws through each decoder (below: centre crops enlarged)",
    "Title of the samples figure.",
)


def _taps_label(kernel_size: int, overlap) -> str:
    """'kernel 3: 1, 2 or 4 taps (uneven)': the tap counts inside the border."""
    counts = sorted(set(overlap[1:-1, 1:-1].ravel().tolist()))
    listed = " or ".join([", ".join(map(str, counts[:-1])), str(counts[-1])] if len(counts) > 1
                         else [str(counts[0])])  # fmt: skip
    return f"kernel {kernel_size}: {listed} taps ({'uneven' if len(counts) > 1 else 'even'})"


def _main(FLAGS) -> int | None:
    from tfvae.evaluation import latents as analysis
    from tfvae.evaluation import upsampling
    from tfvae.figures import visualize
    from tfvae.models import vae as model
    from tfvae.samplers import store

    restored = [(d, *model.restore(d)) for d in FLAGS.model_dirs]
    runs = [(d, c, v) for d, c, v, _ in restored]
    draws = None
    if FLAGS.sampler != "prior":
        draws = [store.code_draws(d, FLAGS.sampler, v, ck) for d, _, v, ck in restored]
    result = upsampling.upsampling_comparison(
        [(f"{c.upsampling} ({os.path.basename(d.rstrip('/'))})", c, v) for d, c, v in runs],
        analysis.real_images(runs[0][1]), FLAGS.num_images, FLAGS.seed, FLAGS.temperature, draws,
    )  # fmt: skip
    names = list(result["checkerboard"])
    labels = [f"{n}\ncheckerboard {m:.4f}" for n, (m, _) in result["checkerboard"].items()]
    size = runs[0][1].image_size
    visualize.save_outputs(
        FLAGS.output_dir, FLAGS.name,
        {"checkerboard_mean_and_standard_error": result["checkerboard"],
         "data_checkerboard_mean_and_standard_error": result["data_checkerboard"],
         "num_images": FLAGS.num_images, "seed": FLAGS.seed, "runs": names,
         "temperature": FLAGS.temperature, "sampler": FLAGS.sampler},
        result["samples"][:, : FLAGS.num_shown],
        title=FLAGS.title,
        row_labels=labels, zoom=(size // 4, size // 4, size // 2),
    )  # fmt: skip
    kernels = sorted({c.kernel_size for _, c, _ in runs} | {3, 4})
    overlaps = np.stack([upsampling.transposed_conv_overlap(k, 2, 4) for k in kernels])
    grid = (overlaps / overlaps.max())[None, ..., None].repeat(3, -1)  # [1, K, S, S, 3]
    path = visualize.save_outputs(
        FLAGS.output_dir, "transposed_conv_overlap",
        {"kernel_sizes": kernels, "stride": 2, "taps_per_output_pixel": overlaps},
        grid, title="Taps per output pixel, stride 2 (brighter = more)",
        column_labels=[_taps_label(k, o) for k, o in zip(kernels, overlaps, strict=True)],
    )  # fmt: skip
    for name, (mean, sem) in result["checkerboard"].items():
        print(f"{name}: checkerboard energy {mean:.4f} +- {sem:.4f}")
    print(f"real images: {result['data_checkerboard'][0]:.4f}; written to {os.path.dirname(path)}")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, aliases={"num_samples": "num_images"})


def run() -> None:
    """The `tfvae-compare-upsampling` console script."""
    common.run(main)
