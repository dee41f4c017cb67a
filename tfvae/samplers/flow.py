"""A masked autoregressive flow (MAF, Papamakarios et al. 2017) with MADE networks as Keras 3
layers (TFP's `tfb.AutoregressiveNetwork` is a tf_keras layer whose weights Keras 3 does not
track).

Direction: the flow maps a code z to noise u ~ N(0, I) in one pass of each MADE, so log p(z) is
cheap (fitting, scoring); sampling inverts each layer one coordinate at a time (Z passes).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_LOG_SCALE_BOUND = 5.0  # |log scale| of each affine step stays below this (smooth clamp)


def made_masks(dims: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MADE masks (Germain et al. 2015) for inputs in the natural order 1..Z.

    Returns float32 masks [Z, W], [W, W] and [W, 2Z]: output d (a shift or a log scale of
    coordinate d) depends only on inputs < d.
    """
    inputs = np.arange(1, dims + 1)
    hidden = np.arange(width) % max(dims - 1, 1) + 1  # degrees 1..Z-1, cycled
    first = (hidden[None, :] >= inputs[:, None]).astype(np.float32)
    middle = (hidden[None, :] >= hidden[:, None]).astype(np.float32)
    outputs = np.concatenate([inputs, inputs])
    last = (outputs[None, :] > hidden[:, None]).astype(np.float32)
    return first, middle, last


class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask [in, out]."""

    def __init__(self, mask, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, np.float32)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        fan_in, units = self.mask.shape
        self.kernel = self.add_weight(
            shape=(fan_in, units), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias")

    def call(self, x):
        return self.activation(x @ (self.kernel * self.mask) + self.bias)


class Made(keras.layers.Layer):
    """z [N, Z] -> (shift, log_scale), each [N, Z], output d a function of z_<d only."""

    def __init__(self, dims: int, width: int, **kwargs):
        super().__init__(**kwargs)
        first, middle, last = made_masks(dims, width)
        self.dims = dims
        self.hidden = [MaskedDense(first, "relu"), MaskedDense(middle, "relu")]
        self.out = MaskedDense(last)
        self.out.build((None, width))
        self.out.kernel.assign(self.out.kernel * 0.01)  # starts near the identity map

    def call(self, z):
        h = z
        for layer in self.hidden:
            h = layer(h)
        shift, raw = tf.split(self.out(h), 2, axis=-1)
        return shift, _LOG_SCALE_BOUND * tf.tanh(raw / _LOG_SCALE_BOUND)


class MaskedAutoregressiveFlow(keras.Model):
    """log p(z) of a MAF with `layers` MADEs (order reversed between them) on standardized codes.

    z is first standardized with fixed per-dimension `mean` and `std` (the training codes'), so
    p(z) = p_flow((z - mean) / std) / prod(std).
    """

    def __init__(self, dims: int, layers: int = 4, width: int = 128, mean=None, std=None):
        super().__init__()
        self.dims, self.num_layers, self.width = dims, layers, width
        self.mades = [Made(dims, width) for _ in range(layers)]
        mean = np.zeros(dims) if mean is None else mean
        std = np.ones(dims) if std is None else std
        self.shift_of_data = self.add_weight(
            shape=(dims,), initializer=keras.initializers.Constant(np.float32(mean)),
            trainable=False, name="shift_of_data",
        )  # fmt: skip
        self.scale_of_data = self.add_weight(
            shape=(dims,), initializer=keras.initializers.Constant(np.float32(std)),
            trainable=False, name="scale_of_data",
        )  # fmt: skip
        self.to_noise(tf.zeros([1, dims]))  # builds every weight

    def to_noise(self, z):
        """z float32 [N, Z] -> (u [N, Z], log |det du/dz| [N]) in nats."""
        u = (z - self.shift_of_data) / self.scale_of_data
        log_det = -tf.reduce_sum(tf.math.log(self.scale_of_data)) * tf.ones_like(z[:, 0])
        for made in self.mades:
            shift, log_scale = made(u)
            u = tf.reverse((u - shift) * tf.exp(-log_scale), axis=[-1])
            log_det -= tf.reduce_sum(log_scale, axis=-1)
        return u, log_det

    def log_prob(self, z):
        """log p(z), float32 [N] in nats, for codes z float32 [N, Z]."""
        u, log_det = self.to_noise(tf.convert_to_tensor(z, tf.float32))
        base = -0.5 * tf.reduce_sum(tf.square(u), -1) - 0.5 * self.dims * np.log(2 * np.pi)
        return base + log_det

    def from_noise(self, u):
        """The inverse of `to_noise`: u float32 [N, Z] -> z [N, Z] (Z passes per MADE)."""
        for made in reversed(self.mades):
            target = tf.reverse(u, axis=[-1])  # (z - shift) * exp(-log_scale) of this layer
            z = tf.zeros_like(target)
            for _ in range(self.dims):  # coordinate d is exact after d passes
                shift, log_scale = made(z)
                z = target * tf.exp(log_scale) + shift
            u = z
        return u * self.scale_of_data + self.shift_of_data


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
            "The flow's held-out log-density was never finite; try a smaller --flow_width or "
            "--flow_layers, or another --seed."
        )
    for variable, value in zip(flow.weights, best[1], strict=True):
        variable.assign(value)
    return flow, history
