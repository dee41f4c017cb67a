"""Sample quality of a trained run: FID, factor Frechet distance and accuracy, sample grids.

  python tools/sample_quality.py --model_dir=runs/quickstart [--num_images=1000]
  python tools/sample_quality.py --model_dir=runs/quickstart --samplers=prior,gaussian,gmm,flow

Compares N prior samples at each --temperature (z = T eps for N(0, I)), N samples of each fitted
sampler named in --samplers (tfvae-fit-sampler; figures/samples_NAME_t{T}.png), N reconstructions
and diagnostic decodings with the first N validation images, in InceptionV3 features (FID; needs
its ImageNet weights: downloaded by Keras on first use, or --inception_weights=PATH) and, on the
built-in faces, in the features of a factor classifier trained once and cached under the data
directory. Merges the numbers into model_dir/metrics.json and writes figures/samples_t{T}.png and
figures/sample_quality.png. Frechet distances grow as N shrinks: compare runs at the same N.
"""

import os
import time

import numpy as np

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.integer(
    "num_images",
    1000,
    "Images in every compared set (capped at the smallest split).",
    lower_bound=2,
)
define.list(
    "temperature",
    ["1.0", "0.7"],
    "Temperatures T, one set of samples each: z ~ N(0, T^2 I) for the prior N(0, I); an entry "
    "T1:T2:... gives a hierarchy one T per latent group, top down.",
)
define.list(
    "samplers", ["prior"],
    "Where codes come from: prior, and/or samplers fitted by tfvae-fit-sampler (their names).",
)  # fmt: skip
define.integer("seed", 0, "Seed of the prior draws.")
define.enum("fid", "auto", ["auto", "on", "off"], "InceptionV3 FID (auto: if available).")
define.string("inception_weights", "", "No-top InceptionV3 weights file ('' = download).")
define.integer("classifier_epochs", 10, "Epochs of the built-in factor classifier.")
define.integer("classifier_train_size", 0, "Its training images (0 = all 10,000).")
define.integer("num_shown", 64, "Samples in each grid (8 per row).", lower_bound=1)


def _main(FLAGS) -> int | None:
    start = time.perf_counter()
    temperatures = common.temperature_list(FLAGS, "temperature")
    from tfvae.evaluation import factor_classifier
    from tfvae.evaluation import sample_quality as quality
    from tfvae.figures import visualize
    from tfvae.models import base
    from tfvae.runtime import files
    from tfvae.samplers import store

    config, vae, checkpoint = common.restore(FLAGS)
    for t in temperatures:  # one T per group: as many as the model has groups
        try:
            vae.latent_temperatures(t)
        except ValueError as error:
            raise common.UsageError(f"Flag `--temperature`: {error}") from None
    samplers = {}
    for name in FLAGS.samplers or []:
        samplers[name] = (
            None if name == "prior" else store.load(FLAGS.model_dir, name, checkpoint)[0]
        )
    if not samplers:
        raise common.UsageError("Flag `--samplers` is empty; name prior and/or fitted samplers.")
    inception, why_no_fid = quality.inception_or_reason(FLAGS.fid, FLAGS.inception_weights)
    classifier, info = None, {}
    if config.dataset == "builtin":
        recipe = factor_classifier.classifier_recipe(
            config.image_size, FLAGS.classifier_train_size, FLAGS.classifier_epochs
        )
        classifier, info = factor_classifier.load_or_train(config.data_dir, recipe)
    metrics, sets = quality.sample_quality(
        config, vae, FLAGS.num_images, temperatures, FLAGS.seed, classifier, inception, samplers
    )
    used = len(sets["validation"])
    common.note_capped(FLAGS.num_images, used, "num_images", "the smaller of train and validation")
    metrics["sample_quality_checkpoint"] = os.path.basename(checkpoint)
    metrics["fid_skipped"] = why_no_fid or None
    if info:
        metrics["factor_classifier"] = {k: info[k] for k in ("key", "directory", "recipe")}
    figures = os.path.join(FLAGS.model_dir, "figures")
    columns = min(8, used)  # 8 per row, or one row of all N on a small split
    shown = max(min(FLAGS.num_shown, used) // columns, 1) * columns
    for name in samplers:
        for temperature in temperatures:
            t = base.temperature_name(temperature)
            key = quality.samples_key(name, temperature)
            groups = (f"the groups, top down, at T={', '.join(map(str, temperature))}"
                      if isinstance(temperature, tuple) else f"every group at T={t}")  # fmt: skip
            prior = (
                groups if config.architecture == "hierarchical"
                else f"z ~ N(0, {t}^2 I)" if config.prior == "normal"
                else f"the {config.prior} prior"
            )  # fmt: skip
            title = (f"Prior samples at T={t} ({prior})" if name == "prior"
                     else f"Samples of the {name} sampler at T={t}")  # fmt: skip
            visualize.save_outputs(
                figures, key, {"temperature": temperature, "seed": FLAGS.seed, "sampler": name},
                sets[key][:shown].reshape(-1, columns, *sets["validation"].shape[1:]), title=title,
            )  # fmt: skip
    names = [n for n in sets if n != "train"]
    visualize.save_outputs(
        figures, "sample_quality", {"rows": names},
        np.stack([sets[n][:8] for n in names]), title="Real, reconstructed and sampled images",
        row_labels=[quality.row_label(n) for n in names],
    )  # fmt: skip
    metrics["sample_quality_wall_seconds"] = round(time.perf_counter() - start, 1)
    files.merge_metrics(os.path.join(FLAGS.model_dir, "metrics.json"), metrics)
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"{key}: {value:.4f}")
    print(f"FID: {why_no_fid}" if why_no_fid else "")
    print(f"written to {os.path.join(FLAGS.model_dir, 'metrics.json')} and {figures}")


ALIASES = {"num_samples": "num_images", "temperatures": "temperature"}
main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases=ALIASES)


def run() -> None:
    """The `tfvae-sample-quality` console script."""
    common.run(main)
