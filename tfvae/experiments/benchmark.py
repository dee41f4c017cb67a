"""Throughput measurements: FLOPs of the traced model, the machine's matmul peak, timed steps.

FLOPs count the multiply-adds of convolutions, transposed convolutions and matrix products in
the model's graph (1 multiply-add = 2 FLOPs); batch norm, activations and likelihoods are left
out, so achieved GFLOP/s are a lower bound.
A train step counts as 3x the forward pass (forward, and backward for inputs and weights).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf


def forward_flops(model, image_size: int, k: int) -> int:
    """FLOPs of `model.log_weights` for one image with k samples (the encoder once, the decoder
    k times), counted from the traced graph: 2 per multiply-add of every convolution, transposed
    convolution and matrix product, so any architecture is counted as it runs."""
    x = tf.TensorSpec([1, image_size, image_size, 3], tf.float32)
    seed = tf.constant([0, 0], tf.int64)
    traced = tf.function(lambda images: model.log_weights(images, k, seed=seed))
    return graph_flops(traced.get_concrete_function(x).graph)


def graph_flops(graph) -> int:
    """2 x the multiply-adds of the Conv2D, Conv2DBackpropInput (transposed convolution),
    MatMul and BatchMatMul ops in `graph`, from their static shapes."""
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":  # filter [kh, kw, in, out]: each output element sums kh kw in
            kh, kw, channels_in, _ = op.inputs[1].shape
            total += 2 * op.outputs[0].shape.num_elements() * kh * kw * channels_in
        elif op.type == "Conv2DBackpropInput":  # filter [kh, kw, out, in]: each input element
            kh, kw, channels_out, _ = op.inputs[1].shape  # spreads over kh kw out outputs
            total += 2 * op.inputs[2].shape.num_elements() * kh * kw * channels_out
        elif op.type == "MatMul":
            transposed = op.get_attr("transpose_a")
            contracted = op.inputs[0].shape[0 if transposed else 1]
            total += 2 * op.outputs[0].shape.num_elements() * contracted
        elif op.type.startswith("BatchMatMul"):
            contracted = op.inputs[0].shape[-2 if op.get_attr("adj_x") else -1]
            total += 2 * op.outputs[0].shape.num_elements() * contracted
    return total


# A cosine learning-rate schedule needs a run's length; the rate's value does not change what a
# step costs, so timed steps use this nominal one.
_NOMINAL_SCHEDULE_STEPS = 1_000_000


def timed_steps(config, strategy=None, compute_dtype: str = "float32"):
    """training.steps.Steps of `config` to time (under `strategy`, default the current one),
    with any learning-rate schedule given a nominal length."""
    from tfvae.training.steps import Steps

    strategy = strategy or tf.distribute.get_strategy()
    return Steps(config, strategy, compute_dtype, total_steps=_NOMINAL_SCHEDULE_STEPS)


def _time(fn, repeats: int) -> float:
    """Seconds per call of fn (which must return a tensor), after one warm-up call."""
    fn().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    np.asarray(result)  # waits for the last call
    return (time.perf_counter() - start) / repeats


def matmul_gflops(size: int = 2048, repeats: int = 10, trials: int = 5, dtype=tf.float32):
    """The machine's GFLOP/s on a square matmul of `size` (2 size^3 FLOPs each).

    Returns (best, median) over `trials` timings of `repeats` matmuls; the best is the peak
    that achieved throughput is compared with (the conservative choice).
    """
    a = tf.random.stateless_normal([size, size], [0, 1], dtype=dtype)
    b = tf.random.stateless_normal([size, size], [0, 2], dtype=dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    speeds = [2 * size**3 / _time(matmul, repeats) / 1e9 for _ in range(trials)]
    return max(speeds), float(np.median(speeds))


def train_images_per_second(steps, batch_size: int, repeats: int, warmup: int = 2) -> float:
    """Images/s of `steps.train_step` (training.steps.Steps) on a fixed random uint8 batch."""
    config = steps.config
    images = tf.random.stateless_uniform(
        [batch_size, config.image_size, config.image_size, 3], [0, 3], maxval=256, dtype=tf.int32
    )
    images = tf.cast(images, tf.uint8)
    seed = tf.constant([config.seed, 0], tf.int64)
    for _ in range(warmup):
        steps.train_step(images, seed)
    return batch_size / _time(lambda: steps.train_step(images, seed)["loss"], repeats)


def train_step_rows(base, likelihood_names, ks, dtypes, repeats: int, peak_gflops: float):
    """Times the train step for every (likelihood, k, dtype), yielding one dict per setting.

    Each row: likelihood, k, dtype, gflop_per_image (convolutions and dense layers only),
    images_per_second, gflops, percent_of_peak, and the speed ratios `vs_float32` (same
    likelihood and k) and `vs_first_likelihood` (same k and dtype; None where not measured).
    All settings run in one process, the likelihoods of one (k, dtype) back to back, so the
    ratios compare settings measured under the same machine load.
    """
    import keras

    speeds = {}
    for k in ks:
        for dtype in dtypes:
            for name in likelihood_names:  # innermost: compared settings run back to back
                config = base.replace(likelihood=name, k=k)
                keras.utils.set_random_seed(config.seed)
                steps = timed_steps(config, compute_dtype=dtype)
                flops = 3 * forward_flops(steps.model, config.image_size, k)
                speed = train_images_per_second(steps, config.batch_size, repeats)
                speeds[name, k, dtype] = speed
                float32 = speeds.get((name, k, "float32"))
                first = speeds.get((likelihood_names[0], k, dtype))
                yield dict(
                    likelihood=name,
                    k=k,
                    dtype=dtype,
                    gflop_per_image=flops / 1e9,
                    images_per_second=speed,
                    gflops=speed * flops / 1e9,
                    percent_of_peak=100 * speed * flops / 1e9 / peak_gflops,
                    vs_float32=speed / float32 if float32 and dtype != "float32" else None,
                    vs_first_likelihood=speed / first if name != likelihood_names[0] else None,
                )


def log_likelihood_images_per_second(vae, config, k, batch_size, chunk_size) -> float:
    """Images/s of bounds.log_likelihood on one fixed random batch (after a warm-up call)."""
    from tfvae.evaluation import bounds

    x = tf.random.stateless_uniform([batch_size, config.image_size, config.image_size, 3], [0, 4])
    x = tf.round(x * 255.0) / 255.0

    def run():
        return bounds.log_likelihood(vae, x, k, chunk_size, seed=[0, 0])

    return batch_size / _time(run, repeats=1)


def peak_resident_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def pipeline_images_per_second(config, max_batches: int = 200) -> float:
    """Images/s of the training input pipeline alone (shuffled batches of uint8 images).

    The split is loaded (and, for real images, prepared) before the clock starts; one warm-up
    batch is read first.
    """
    from tfvae import data

    dataset = data.load_config_split(config, "train", config.train_size)
    batches = data.batches(dataset.map(lambda ex: ex["image"]), config.batch_size, shuffle_seed=1)
    batches = batches.repeat().take(max_batches + 1)
    iterator = iter(batches)
    next(iterator)
    start, count = time.perf_counter(), 0
    for images in iterator:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def export_timings(model_dir: str, export_dir: str, batch_size: int = 32, repeats: int = 20):
    """Seconds to export and load a run, and ms per call of its signatures beside the model.

    Latencies (ms per call of `batch_size` images, median of `repeats` after a warm-up) of
    `reconstruct` and `sample` from the SavedModel through tf.saved_model.load and TF1's session
    loader, beside the in-process model: its eager API (`VAE.reconstruct`, `VAE.sample`) and
    the same compiled functions before saving.

    Returns:
      {"export_s", "load_tf2_s", "load_tf1_s", and "<signature>/<runner>_ms" for each pair}.
    """
    from tfvae import data
    from tfvae.export import saved_model as export
    from tfvae.models import vae as model

    start = time.perf_counter()
    path = export.export(model_dir, export_dir)
    timings = {"export_s": time.perf_counter() - start}
    config, vae, _ = model.restore(model_dir)
    module = export.ExportModule(vae, config, 10, 10)
    images = tf.cast(
        tf.random.stateless_uniform(
            [batch_size, config.image_size, config.image_size, 3],
            [0, 5],
            maxval=256,
            dtype=tf.int32,
        ),
        tf.uint8,
    )
    count, seed = tf.constant(batch_size), tf.constant([1, 2], tf.int64)
    temperature = tf.constant(1.0)
    z = tf.random.stateless_normal([batch_size, config.latent_dim], seed, alg="philox")
    start = time.perf_counter()
    loaded = tf.saved_model.load(path)
    timings["load_tf2_s"] = time.perf_counter() - start
    runners = {
        "reconstruct": {
            "eager_api": lambda: vae.reconstruct(data.to_unit_interval(images)),
            "compiled_in_process": lambda: module.reconstruct(images)["reconstructions"],
            "saved_model": lambda: loaded.signatures["reconstruct"](images=images)[
                "reconstructions"
            ],
        },
        "sample": {
            "eager_api": lambda: vae.sample(z=z),
            "compiled_in_process": lambda: module.sample(count, seed, temperature)["images"],
            "saved_model": lambda: loaded.signatures["sample"](
                count=count, seed=seed, temperature=temperature
            )["images"],
        },
    }
    for name, by_runner in runners.items():
        for runner, fn in by_runner.items():
            timings[f"{name}/{runner}_ms"] = 1e3 * _median_seconds(fn, repeats)
    timings.update(_tf1_timings(path, images.numpy(), batch_size, repeats))
    return timings


def _median_seconds(fn, repeats: int) -> float:
    """Median seconds of one call of fn (returning a tensor), after one warm-up call."""
    np.asarray(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _tf1_timings(path: str, images: np.ndarray, batch_size: int, repeats: int) -> dict:
    """Load time and signature latencies through TF1's session loader (TF Serving's path)."""
    timings = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        start = time.perf_counter()
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        timings["load_tf1_s"] = time.perf_counter() - start
        feeds = {
            "reconstruct": {"images": images},
            "sample": {
                "count": batch_size,
                "seed": np.array([1, 2], np.int64),
                "temperature": np.float32(1.0),
            },
        }
        for name, inputs in feeds.items():
            signature = meta_graph.signature_def[name]
            feed = {signature.inputs[k].name: v for k, v in inputs.items()}
            fetch = [v.name for v in signature.outputs.values()]
            timings[f"{name}/tf1_session_ms"] = 1e3 * _median_seconds(
                lambda fetch=fetch, feed=feed: session.run(fetch, feed)[0], repeats
            )
    return timings


def distributed_train_images_per_second(config, repeats: int, warmup: int = 2) -> float:
    """Images/s per worker of the train step under this process's strategy (TF_CONFIG's workers).

    The global batch is config.batch_size random uint8 images, split across replicas as in
    training; each worker's share over the seconds per step (the slowest worker sets the pace).
    """
    import keras

    from tfvae.runtime import cluster

    strategy = cluster.make_strategy(config)
    keras.utils.set_random_seed(config.seed)
    steps = timed_steps(config, strategy)
    shape = [config.batch_size, config.image_size, config.image_size, 3]
    images = tf.cast(
        tf.random.stateless_uniform(shape, [0, 3], maxval=256, dtype=tf.int32), tf.uint8
    )
    batches = iter(cluster.distribute(strategy, tf.data.Dataset.from_tensors(images).repeat()))
    seed = tf.constant([config.seed, 0], tf.int64)
    for _ in range(warmup):
        steps.train_step(next(batches), seed)["loss"].numpy()
    seconds = _time(lambda: steps.train_step(next(batches), seed)["loss"], repeats)
    return config.batch_size / cluster.role(strategy).num_workers / seconds


def local_workers_images_per_second(config, num_workers: int, repeats: int, timeout_s=600):
    """Images/s of each of `num_workers` local worker processes (tfvae.testing).

    Each worker runs `python -m tfvae.experiments.benchmark` with TF_CONFIG naming all; the global
    batch is config.batch_size. Returns a list of floats, one per worker.
    """
    import json
    import sys

    from tfvae.testing import LocalCluster

    command = [
        sys.executable,
        "-m",
        "tfvae.experiments.benchmark",
        json.dumps(config.to_dict()),
        str(repeats),
    ]
    with LocalCluster([command] * num_workers) as cluster:
        codes = cluster.wait(timeout_s)
        outputs = [cluster.output(i) for i in range(num_workers)]
    if codes != [0] * num_workers:
        raise RuntimeError(f"benchmark workers exited {codes}:\n{outputs[0][-2000:]}")
    return [float(out.split("images_per_second_per_worker=")[1].split()[0]) for out in outputs]


if __name__ == "__main__":  # one worker of local_workers_images_per_second
    import json
    import sys

    from tfvae import config as config_lib

    _config = config_lib.Config(**json.loads(sys.argv[1]))
    _speed = distributed_train_images_per_second(_config, int(sys.argv[2]))
    print(f"images_per_second_per_worker={_speed}", flush=True)
