"""Importance-sampling noise drawn per example: latent noise from (seed, example) and
dequantization noise from (seed, example, sample), so an estimate does not depend on batching,
chunking or the replicas (the train step's validation and the bounds both draw it here)."""

from __future__ import annotations

import tensorflow as tf


def per_example_noise(seed, example_ids, k: int, latent_dim: int) -> tf.Tensor:
    """Standard-normal noise float32 [K, B, Z]; example e's [K, Z] depends on (seed, e) only.

    Drawing all K samples of an example from its own seed makes an estimate independent of the
    batch the example sits in and of how the K samples are chunked.
    """
    seed = tf.cast(seed, tf.int64)

    def one_example(example_id):
        example_seed = tf.random.experimental.stateless_fold_in(seed, example_id)
        return tf.random.stateless_normal([k, latent_dim], example_seed, alg="philox")

    ids = tf.cast(example_ids, tf.int64)
    noise = tf.map_fn(one_example, ids, fn_output_signature=tf.float32)  # [B, K, Z]
    return tf.transpose(noise, [1, 0, 2])


def per_sample_uniform(seed, example_ids, start, num, image_shape) -> tf.Tensor:
    """Dequantization noise float32 [num, B, H, W, C] in [0, 1) for samples start..start+num-1.

    Sample k of example e depends on (seed, e, k) only, so an estimate does not depend on
    batching or chunking: example e has its own Philox key (from seed and e, a stream apart from
    per_example_noise's) and sample k the counters [k M, (k + 1) M), M = ceil(D / 4) (Philox
    makes 4 words per counter), so one draw covers a whole chunk of samples.
    """
    image_shape = tf.cast(image_shape, tf.int32)
    num = tf.cast(num, tf.int32)
    dims = tf.reduce_prod(image_shape)  # D
    blocks = (dims + 3) // 4  # M counters per sample
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), -1)

    def one_example(example_id):
        example_seed = tf.random.experimental.stateless_fold_in(seed, example_id)
        key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(seed=example_seed)
        first = tf.cast(start, tf.int64) * tf.cast(blocks, tf.int64)  # sample start's counter
        counter = tf.cast(tf.stack([first, 0]), tf.uint64)
        words = tf.raw_ops.StatelessRandomUniformV2(
            shape=tf.stack([num, 4 * blocks]),
            key=key,
            counter=counter,
            alg=1,  # 1: Philox
        )  # [num, 4 M]
        return tf.reshape(words[:, :dims], tf.concat([[num], image_shape], 0))

    noise = tf.map_fn(
        one_example, tf.cast(example_ids, tf.int64), fn_output_signature=tf.float32
    )  # [B, num, H, W, C]
    return tf.transpose(noise, tf.concat([[1, 0], tf.range(2, tf.rank(noise))], 0))
