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
With --compress, the same images also go through tfvae-compress's bits-back coder into one file
(--compress_output), which is read back and decoded and must give the same pixels: its bits/dim
(8 x bytes / (N H W C)) beside the -ELBO, log p(x) and the codecs, the seed's (the initial
bits') share of it separately, and the coder's speed beside the model's forward pass.
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
define.bool(
    "compress", False, "Also compress the same images with tfvae-compress's bits-back coder into "
    "one file, decode it back, and give the file's bits/dim beside the model's and the codecs'.",
)  # fmt: skip
define.string(
    "compress_output", None,
    "The file --compress writes (default MODEL_DIR/compressed/SPLIT_N.tfvz).",
)  # fmt: skip
common.define_latent_grid_flags(define, "--compress")
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
    if FLAGS.compress:  # refused before the long evaluation
        from tfvae.compression import compress, latents

        grid = latents.default(FLAGS.latent_bits, FLAGS.latent_grid, FLAGS.coding_prior)
        compress.check_codable(vae, [config.image_size, config.image_size, 3], grid)
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
    verdicts = []
    if (FLAGS.codecs or FLAGS.compress) and metrics.get("bits_per_dim") is not None:
        from tfvae import data
        from tfvae.evaluation import codecs

        images = data.load_config_split(config, FLAGS.split, used).batch(500)
        images = np.concatenate([batch["image"].numpy() for batch in images])  # those evaluated
        if FLAGS.codecs:
            metrics["codec_bits_per_dim"] = codecs.baselines(images)
            verdicts.append(codecs.verdict(metrics["bits_per_dim"], metrics["codec_bits_per_dim"]))
        if FLAGS.compress:
            metrics["compressed"] = _compressed(FLAGS, config, vae, images, metrics, grid)
            verdicts.append(_compressed_line(metrics))
            if FLAGS.codecs:
                file_bits = metrics["compressed"]["bits_per_dim"]
                codec_bits = metrics["codec_bits_per_dim"]
                verdicts.append(codecs.verdict(file_bits, codec_bits, "the file"))
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
    for line in verdicts:
        print(line)
    print(f"written to {path}")


def _compressed(FLAGS, config, vae, images, metrics: dict, grid) -> dict:
    """The images evaluated (uint8 [N, H, W, 3]) through `compress.round_trip`, beside the
    model's -ELBO and log p(x) in bits/dim."""
    from tqdm import tqdm

    from tfvae.compression import compress, container
    from tfvae.evaluation import units

    path = FLAGS.compress_output or os.path.join(
        FLAGS.model_dir, "compressed", f"{FLAGS.split}_{len(images)}.tfvz"
    )
    names = [f"{FLAGS.split}_{i:06d}.png" for i in range(len(images))]
    fingerprint = container.fingerprint(os.path.join(FLAGS.model_dir, "config.json"), vae)
    with tqdm(total=len(images), unit="img", desc="bits-back file") as bar:
        numbers = compress.round_trip(
            vae, names, images, fingerprint, path, grid=grid, progress=bar.update
        )
    convention = units.convention_or_none(config.likelihood)
    negative_elbo = units.bits_per_dim(-metrics["elbo_nats"], config.num_dims, convention)
    numbers["negative_elbo_bits_per_dim"] = float(negative_elbo)
    numbers["log_likelihood_bits_per_dim"] = metrics["bits_per_dim"]
    return numbers


def _compressed_line(metrics: dict) -> str:
    """One line: the file's bits/dim, the seed's share, the model's bounds, speed."""
    c = metrics["compressed"]
    chain, saving = c["chain_bits_per_dim"], c.get("coding_prior_saving_bits_per_dim")
    ratio = lambda r: "" if r is None else f", {r:.1f}x"  # noqa: E731
    return (
        f"bits-back file {c['file']}: {c['bits_per_dim']:.4f} bits/dim ({c['bytes']:,} bytes; "
        f"the seed: {c['seed_images']} JPEG XL file(s), {c['seed_bits_per_dim']:.4f} bits/dim of "
        "it; the chain: "
        + ("empty" if chain is None else f"{chain:.4f} bits/dim")
        + f") beside -ELBO {c['negative_elbo_bits_per_dim']:.4f}"
        + (f" (the fitted coding prior saves {saving:.4f} of it)" if saving else "")
        + f" and log p(x) "
        f"{c['log_likelihood_bits_per_dim']:.4f}; decoded back {c['round_trip']}; encode "
        f"{c['encode_images_per_second']:.1f} images/s{ratio(c['encode_to_forward'])}, decode "
        f"{c['decode_images_per_second']:.1f} images/s{ratio(c['decode_to_forward'])} the "
        "model's forward pass on the same batches"
    )


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases=ALIASES)


def run() -> None:
    """The `tfvae-bpp` console script."""
    common.run(main)
