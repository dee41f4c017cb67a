"""Importance-sampled log-likelihood and bits/dim of a trained run (the report's section 4).

  python tools/bpp.py --model_dir=runs/celeba_iwae --k=2000
  tfvae-bpp --flagfile=configs/quickstart.flags --k=2000 --num_images=1000

Rebuilds the model from model_dir/config.json, restores its newest readable checkpoint, estimates
log p(x) = logsumexp_k log w_k - log K for each example with K samples, and prints and writes
model_dir/metrics.json: NLL (nats) with its standard error, bits/dim with its convention, the
report's bits-per-pixel figure, the ELBO and IWAE-k bound of the same samples, active units,
and the bits/dim of the same images stored losslessly as PNG, WebP and JPEG XL (efforts 9 and
10) files, with one line naming the codecs the model beats and those it does not (--codecs);
and model_dir/log_likelihood_per_example.npz: each example's log p(x), ELBO and IWAE-k bound
(float64 nats, in split order), for paired comparisons of runs on the same images.
With TF_CONFIG listing several workers (the same command on each), the examples are split
across them; every worker gets all results and the chief writes metrics.json.
"""

import json
import os
import time

import numpy as np

from tfvae.cli import common
from tfvae.evaluation import DEFAULT_CHUNK_SIZE

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.integer("k", 2000, "Importance samples K per image.", lower_bound=1)
define.enum("split", "validation", ["train", "validation", "test"], "Split to evaluate.")
define.integer(
    "num_images", 1000, "Images evaluated, the first of the split (0 = all).", lower_bound=0
)
define.integer(
    "eval_batch_size", 5, "Images per batch on each replica (device or worker).", lower_bound=1
)
define.integer(
    "chunk_size",
    DEFAULT_CHUNK_SIZE,
    "Importance samples decoded at once per image (memory ~ eval_batch_size x chunk_size).",
    lower_bound=1,
)
define.integer("seed", 0, "Seed of the importance samples.")
define.bool(
    "codecs", True, "Also store the same images as PNG, WebP and JPEG XL (efforts 9 and 10) "
    "lossless files (one per image) and give their bits/dim beside the model's.",
)  # fmt: skip
ALIASES = {"num_examples": "num_images", "batch_size": "eval_batch_size"}


def _main(FLAGS) -> int | None:
    from tqdm import tqdm

    from tfvae import config as config_lib
    from tfvae.evaluation import bounds, split
    from tfvae.runtime import cluster, files

    start = time.perf_counter()
    strategy = cluster.make_strategy(config_lib.Config())  # auto: TF_CONFIG's workers
    role = cluster.role(strategy)
    config, vae, checkpoint = common.restore(FLAGS, strategy=strategy)
    bounds.check_run_chunk(config, vae.latent_dim, FLAGS.k, FLAGS.eval_batch_size, FLAGS.chunk_size)
    agreed = dict(k=FLAGS.k, split=FLAGS.split, num_images=FLAGS.num_images, seed=FLAGS.seed)
    cluster.check_agreement(strategy, role, dict(agreed, checkpoint=checkpoint))
    total = FLAGS.num_images or None  # the split may hold fewer (said after)
    bar = tqdm(total=total, unit="img", desc=f"log p(x), K={FLAGS.k}", disable=not role.is_chief)
    with bar:
        results = split.evaluate_split(
            config, vae, FLAGS.split, FLAGS.k, FLAGS.num_images, FLAGS.eval_batch_size,
            FLAGS.chunk_size, FLAGS.seed, progress=bar.update, strategy=strategy,
        )  # fmt: skip
    used = len(results["log_likelihood"])
    common.note_capped(FLAGS.num_images, used, "num_images", f"the {FLAGS.split} split")
    metrics = split.summarize(config, results, FLAGS.k)
    if not role.is_chief:
        return
    verdict = None
    if FLAGS.codecs and metrics.get("bits_per_dim") is not None:
        from tfvae import data
        from tfvae.evaluation import codecs

        images = data.load_config_split(config, FLAGS.split, used).batch(500)
        images = np.concatenate([batch["image"].numpy() for batch in images])  # those evaluated
        metrics["codec_bits_per_dim"] = codecs.baselines(images)
        verdict = codecs.verdict(metrics["bits_per_dim"], metrics["codec_bits_per_dim"])
    metrics.update(
        split=FLAGS.split,
        seed=FLAGS.seed,
        checkpoint=os.path.basename(checkpoint),
        wall_seconds=round(time.perf_counter() - start, 1),
    )
    split.save_per_example(FLAGS.model_dir, results)
    path = os.path.join(FLAGS.model_dir, files.METRICS_FILE)
    files.merge_metrics(path, metrics)  # keeps other tools' keys (sample quality)
    print(json.dumps(metrics, indent=2))
    if verdict:
        print(verdict)
    print(f"written to {path}")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases=ALIASES)


def run() -> None:
    """The `tfvae-bpp` console script."""
    common.run(main)
