"""Importance-sampled log-likelihood and bits/dim of a trained run (the report's section 4).

  python tools/bpp.py --model_dir=runs/celeba_iwae --k=2000

Rebuilds the model from model_dir/config.json, restores its newest readable checkpoint, estimates
log p(x) = logsumexp_k log w_k - log K for each example with K samples, and prints and writes
model_dir/metrics.json: NLL (nats) with its standard error, bits/dim with its convention, the
report's bits-per-pixel figure, the ELBO and IWAE-k bound of the same samples, active units;
and model_dir/log_likelihood_per_example.npz: each example's log p(x), ELBO and IWAE-k bound
(float64 nats, in split order), for paired comparisons of runs on the same images.
With TF_CONFIG listing several workers (the same command on each), the examples are split
across them; every worker gets all results and the chief writes metrics.json.
"""

import json
import os
import sys
import time

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "A training run's directory.", required=True)
flags.DEFINE_integer("k", 2000, "Importance samples per example.")
flags.DEFINE_string("split", "validation", "Split to evaluate: train, validation or test.")
flags.DEFINE_integer("num_examples", 1000, "Examples evaluated, the first of the split (0 = all).")
flags.DEFINE_integer("batch_size", 5, "Examples per batch on each replica (device or worker).")
flags.DEFINE_integer(
    "chunk_size", 200, "Samples decoded at once per example (memory ~ batch x chunk)."
)
flags.DEFINE_integer("seed", 0, "Seed of the importance samples.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tqdm import tqdm

    from tfvae import cluster, evaluate, model, quality
    from tfvae import config as config_lib

    for name in ("k", "batch_size", "chunk_size"):
        if FLAGS[name].value < 1:
            sys.exit(f"error: Flag `--{name}` is {FLAGS[name].value}; it must be >= 1.")
    start = time.perf_counter()
    try:
        strategy = cluster.make_strategy(config_lib.Config())  # auto: TF_CONFIG's workers
        role = cluster.role(strategy)
        config, vae, checkpoint = model.restore(FLAGS.model_dir, strategy=strategy)
        agreed = {name: FLAGS[name].value for name in ("k", "split", "num_examples", "seed")}
        cluster.check_agreement(strategy, role, dict(agreed, checkpoint=checkpoint))
        total = FLAGS.num_examples or None
        bar = tqdm(
            total=total, unit="img", desc=f"log p(x), K={FLAGS.k}", disable=not role.is_chief
        )
        with bar:
            results = evaluate.evaluate_split(
                config,
                vae,
                FLAGS.split,
                FLAGS.k,
                FLAGS.num_examples,
                FLAGS.batch_size,
                FLAGS.chunk_size,
                FLAGS.seed,
                progress=bar.update,
                strategy=strategy,
            )
    except ValueError as error:
        sys.exit(f"error: {error}")
    metrics = evaluate.summarize(config, results, FLAGS.k)
    metrics.update(
        split=FLAGS.split,
        seed=FLAGS.seed,
        checkpoint=os.path.basename(checkpoint),
        wall_seconds=round(time.perf_counter() - start, 1),
    )
    if not role.is_chief:
        return
    evaluate.save_per_example(FLAGS.model_dir, results)
    path = os.path.join(FLAGS.model_dir, "metrics.json")
    quality.merge_metrics(path, metrics)  # keeps other tools' keys (sample quality)
    print(json.dumps(metrics, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    logging.set_verbosity(logging.ERROR)
    app.run(main)
