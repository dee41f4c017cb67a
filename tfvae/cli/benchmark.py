"""Times the train step against this machine's float32 matmul peak, measured in the same run.

  python tools/benchmark.py --ks=1,5 --dtypes=float32,mixed_bfloat16 --batch_size=64
  python tools/benchmark.py --mode=eval --eval_k=2000 --eval_batch_size=5 --chunk_size=100
  python tools/benchmark.py --mode=data --flagfile=configs/iwae.flags   # input pipeline
  python tools/benchmark.py --mode=export [--model_dir=runs/quickstart]  # SavedModel speed
  python tools/benchmark.py --likelihoods=discretized_logistic,discretized_logistic_mixture
  python tools/benchmark.py --mode=workers --workers=2 --batch_size=32  # local worker processes

Model flags are the training flags (defaults: the report's 64x64 model, width 64, latent 128);
`--flagfile=configs/...flags` benchmarks a config as it trains. Prints FLOPs per image, images/s,
achieved GFLOP/s and its share of the matmul peak, and each dtype's speed-up over float32.
"""

import os
import sys

from tfvae import config as config_lib
from tfvae.cli import common
from tfvae.evaluation import DEFAULT_CHUNK_SIZE

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
config_lib.define_flags(FLAG_DEFINITIONS)
define.enum(
    "mode",
    "train",
    ["train", "eval", "data", "export", "workers"],
    "Time the train step, log p(x) at K, the input pipeline beside the train step, a "
    "SavedModel export (export and load time, signature latency beside the in-process model), "
    "or the train step on one and on --workers local worker processes (MultiWorkerMirrored).",
)
define.integer("workers", 2, "workers mode: local worker processes (batch_size each).")
define.integer("eval_k", 2000, "eval mode: importance samples per image.")
define.integer("eval_batch_size", 5, "eval mode: images per batch.")
define.integer("chunk_size", DEFAULT_CHUNK_SIZE, "eval mode: samples decoded at once per image.")
define.list("ks", ["1", "5"], "Importance samples k to time (overrides --k).")
define.list("dtypes", ["float32", "mixed_bfloat16"], "Layer dtype policies to time.")
define.list(
    "likelihoods",
    [],
    "Likelihoods to time in one run, speed ratios against the first (default: --likelihood).",
)
define.integer("repeats", 10, "Timed train steps per setting (after 2 warm-up steps).")
define.integer("matmul_size", 2048, "Side of the square float32 matmul timed for the peak.")
define.string(
    "model_dir",
    None,
    "export mode: the run to export (default: a freshly initialised model of the model flags); "
    "other modes ignore it, so training flagfiles can be passed.",
)
define.integer("export_batch_size", 32, "export mode: images per reconstruct/sample call.")
FLAG_DEFINITIONS.set_default("batch_size", 64)


def _main(FLAGS) -> int | None:

    from tfvae.experiments import benchmark

    base = config_lib.from_flags(FLAGS)
    if FLAGS.mode == "export":
        return _export(FLAGS, base)
    if FLAGS.mode == "workers":
        return _workers(FLAGS, base)
    peak, median = benchmark.matmul_gflops(FLAGS.matmul_size)
    print(
        f"float32 matmul ({FLAGS.matmul_size}^2), best of 5 trials: {peak:.1f} GFLOP/s "
        f"(median {median:.1f}); '% peak' below is against the best"
    )
    if FLAGS.mode == "eval":
        return _eval(FLAGS, base, peak)
    if FLAGS.mode == "data":
        return _data(FLAGS, base)
    names = FLAGS.likelihoods or [base.likelihood]
    unknown = sorted(set(names) - set(config_lib.LIKELIHOODS))
    if unknown:
        sys.exit(
            f"error: Flag `--likelihoods` has {', '.join(unknown)}; accepted: "
            f"{', '.join(config_lib.LIKELIHOODS)}."
        )
    model = (
        f"hierarchical, latent groups {base.latent_groups} of {base.latent_channels} channels"
        if base.architecture == "hierarchical"
        else f"latent {base.latent_dim}, {base.upsampling}"
    )
    print(
        f"{base.image_size}x{base.image_size}, width {base.width}, {model}, "
        f"batch {base.batch_size}, mixture components "
        f"{base.mixture_components}\n{'likelihood':>28} {'k':>3} {'dtype':>15} {'GFLOP/img':>10} "
        f"{'img/s':>8} {'GFLOP/s':>8} {'% peak':>7}  ratios"
    )
    rows = benchmark.train_step_rows(
        base, names, [int(k) for k in FLAGS.ks], FLAGS.dtypes, FLAGS.repeats, peak
    )
    for row in rows:
        ratios = [
            f"{row[key]:.2f}x {label}"
            for key, label in (("vs_float32", "float32"), ("vs_first_likelihood", names[0]))
            if row[key]
        ]
        print(
            f"{row['likelihood']:>28} {row['k']:>3} {row['dtype']:>15} "
            f"{row['gflop_per_image']:>10.3f} {row['images_per_second']:>8.1f} "
            f"{row['gflops']:>8.1f} {row['percent_of_peak']:>6.1f}%  {', '.join(ratios)}",
            flush=True,
        )


def _data(FLAGS, config):
    import keras

    from tfvae.experiments import benchmark

    pipeline = benchmark.pipeline_images_per_second(config)
    keras.utils.set_random_seed(config.seed)
    steps = benchmark.timed_steps(config)
    train = benchmark.train_images_per_second(steps, config.batch_size, FLAGS.repeats)
    print(
        f"{config.dataset}, {config.image_size}x{config.image_size}, batch {config.batch_size}: "
        f"input pipeline {pipeline:.0f} images/s; float32 train step (k={config.k}) "
        f"{train:.1f} images/s; the pipeline delivers {pipeline / train:.0f}x what training uses"
    )


def _workers(FLAGS, config):
    from tfvae.experiments import benchmark

    one = benchmark.local_workers_images_per_second(config, 1, FLAGS.repeats)[0]
    scaled = config.replace(batch_size=config.batch_size * FLAGS.workers)
    each = benchmark.local_workers_images_per_second(scaled, FLAGS.workers, FLAGS.repeats)
    efficiency = sum(each) / (FLAGS.workers * one)
    print(
        f"{config.image_size}x{config.image_size}, width {config.width}, k={config.k}, "
        f"{config.batch_size} images per worker and step, {FLAGS.repeats} timed steps\n"
        f"1 worker: {one:.1f} images/s\n{FLAGS.workers} workers: "
        f"{', '.join(f'{s:.1f}' for s in each)} images/s per worker, {sum(each):.1f} in all; "
        f"scaling efficiency {100 * efficiency:.0f}% (all processes share this machine's "
        f"{os.cpu_count()} cores)"
    )


def _eval(FLAGS, config, peak):
    from tfvae.experiments import benchmark
    from tfvae.models import vae as model

    vae = model.build(config)
    speed = benchmark.log_likelihood_images_per_second(
        vae, config, FLAGS.eval_k, FLAGS.eval_batch_size, FLAGS.chunk_size
    )
    flops = benchmark.forward_flops(vae, config.image_size, FLAGS.eval_k)
    gflops = speed * flops / 1e9
    print(
        f"log p(x), K={FLAGS.eval_k}, batch {FLAGS.eval_batch_size}, chunk {FLAGS.chunk_size}, "
        f"{config.image_size}x{config.image_size} width {config.width} latent "
        f"{config.latent_dim}: {flops / 1e9:.1f} GFLOP/image, {speed:.3f} images/s, "
        f"{gflops:.1f} GFLOP/s = {100 * gflops / peak:.1f}% of peak; "
        f"peak resident memory {benchmark.peak_resident_gib():.2f} GiB"
    )


def _export(FLAGS, config):
    import tempfile

    import keras
    import tensorflow as tf

    from tfvae import config as config_lib
    from tfvae.experiments import benchmark

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = FLAGS.model_dir
        if not model_dir:  # a freshly initialised model of the flags: export speed only
            model_dir = os.path.join(scratch, "run")
            keras.utils.set_random_seed(config.seed)
            steps = benchmark.timed_steps(config)
            config_lib.save(config, os.path.join(model_dir, "config.json"))
            tf.train.CheckpointManager(steps.checkpoint, model_dir, 1).save(0)
        timings = benchmark.export_timings(
            model_dir, os.path.join(scratch, "export"), FLAGS.export_batch_size, FLAGS.repeats
        )
    print(
        f"export {timings['export_s']:.1f} s; load: tf.saved_model.load "
        f"{timings['load_tf2_s']:.1f} s, TF1 session loader {timings['load_tf1_s']:.1f} s\n"
        f"ms per call of {FLAGS.export_batch_size} images (median of {FLAGS.repeats}):"
    )
    for name in ("reconstruct", "sample"):
        compiled = timings[f"{name}/compiled_in_process_ms"]
        cells = [
            f"{runner} {timings[f'{name}/{runner}_ms']:.1f}"
            f" ({timings[f'{name}/{runner}_ms'] / compiled:.2f}x)"
            for runner in ("eager_api", "compiled_in_process", "saved_model", "tf1_session")
        ]
        print(f"  {name}: " + ", ".join(cells) + "  [ratio to compiled in-process]")


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=False)


def run() -> None:
    """The `tfvae-benchmark` console script."""
    common.run(main)
