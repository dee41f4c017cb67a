"""Fitting a masked autoregressive flow (`tfvae.models.flows.MaskedAutoregressiveFlow`) to
latent codes by maximum likelihood: the `flow` sampler."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfvae.models.flows import MaskedAutoregressiveFlow


def fit_flow(codes, held_out, layers: int, width: int, epochs: int, seed: int, log=None):
    """A MaskedAutoregressiveFlow fitted by maximum likelihood (Adam) to codes float [N, Z].

    Returns (flow, history): history lists the mean log-density of `held_out` codes after each
    epoch (nats per code); the weights of the best held-out epoch are kept.
    """
    codes = np.asarray(codes, np.float32)
    held_out = tf.constant(np.asarray(held_out, np.float32))
    keras.utils.set_random_seed(seed)
    flow = MaskedAutoregressiveFlow(
        codes.shape[1], layers, width, codes.mean(0), codes.std(0) + 1e-6
    )
    optimizer = keras.optimizers.Adam(1e-3)
    variables = flow.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    score = tf.function(lambda z: tf.reduce_mean(flow.log_prob(z)))
    rng = np.random.default_rng(seed)
    batch_size = min(256, len(codes))
    history, best = [], (-np.inf, None)
    for epoch in range(epochs):
        order = rng.permutation(len(codes))
        for start in range(0, len(codes) - batch_size + 1, batch_size):
            step(tf.constant(codes[order[start : start + batch_size]]))
        history.append(float(score(held_out)))
        if history[-1] > best[0]:
            best = (history[-1], [v.numpy() for v in flow.weights])
        if log:
            log(epoch + 1, history[-1])
    if best[1] is None:
        raise ValueError(
            "The flow's held-out log-density was never finite; try a smaller "
            "--sampler_flow_width or --sampler_flow_layers, or another --seed."
        )
    for variable, value in zip(flow.weights, best[1], strict=True):
        variable.assign(value)
    return flow, history
