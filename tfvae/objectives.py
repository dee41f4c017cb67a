"""Variational bounds on log p(x) from importance log-weights. Pure functions, float32 nats.

`log_weights` is float [K, B]: log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x),
samples on the leading axis.
"""

from __future__ import annotations

import math

import tensorflow as tf


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """The K-sample importance-weighted bound, log (1/K) sum_k w_k, float32 [B] in nats.

    Computed as logsumexp over K minus log K (stable for any range of log-weights). For K = 1 it
    is the single-sample ELBO; its expectation does not decrease with K and tends to log p(x).
    """
    log_weights = tf.cast(log_weights, tf.float32)
    num_samples = tf.cast(tf.shape(log_weights)[0], tf.float32)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_samples)


def elbo(log_weights: tf.Tensor) -> tf.Tensor:
    """The ELBO estimated with the same K samples, mean_k log w_k, float32 [B] in nats."""
    return tf.reduce_mean(tf.cast(log_weights, tf.float32), axis=0)


def log_mean_exp_update(running: tf.Tensor, count: float, chunk: tf.Tensor) -> tf.Tensor:
    """Streams a log-mean-exp: combines the running value over `count` samples with a chunk.

    Args:
      running: float32 [B], log (1/count) sum w over the samples so far (ignored if count = 0).
      count: number of samples behind `running`.
      chunk: float32 [K_chunk, B] new log-weights.

    Returns:
      float32 [B], the log-mean-exp over count + K_chunk samples.
    """
    chunk = tf.cast(chunk, tf.float32)
    chunk_size = tf.cast(tf.shape(chunk)[0], tf.float32)
    chunk_sum = tf.reduce_logsumexp(chunk, axis=0)  # log sum over the chunk
    if isinstance(count, int | float) and count == 0:
        return chunk_sum - tf.math.log(chunk_size)
    count = tf.cast(count, tf.float32)
    total = tf.reduce_logsumexp(tf.stack([running + tf.math.log(count), chunk_sum]), axis=0)
    return total - tf.math.log(count + chunk_size)


LOG2 = math.log(2.0)
