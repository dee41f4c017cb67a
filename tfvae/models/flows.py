"""Autoregressive flows on latent codes, with MADE networks written as Keras 3 layers (TFP's
`tfb.AutoregressiveNetwork` is a tf_keras layer whose weights a Keras 3 model does not track).

- `MaskedAutoregressiveFlow` (MAF, Papamakarios et al. 2017): maps a code z to noise u in one
  pass of each MADE, so log p(z) is cheap; drawing inverts each layer coordinate by coordinate
  (Z passes). The flow prior (`priors.FlowPrior`) and the flow sampler (`tfvae.samplers`) use it.
- `InverseAutoregressiveFlow` (IAF, Kingma et al. 2016): maps noise to a code in one pass of each
  MADE, conditioned on a context vector of the encoder, so drawing z ~ q(z|x) and its own
  log q(z|x) are cheap; scoring another z inverts it (Z passes). `--posterior=iaf` uses it.

Every step is affine per coordinate: in the MAF z_d = u_d exp(s_d) + m_d with (m, s) a MADE of
the code side z_<d (so z -> u is one pass); in the IAF y_d = x_d exp(s_d) + m_d with (m, s) a
MADE of the noise side x_<d (so x -> y is one pass). The coordinates are reversed between steps.
All weights are float32.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfvae.models import gaussian

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
        super().__init__(dtype="float32", **kwargs)
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
    """z [N, Z] (and a context [N, C]) -> (shift, log_scale), each [N, Z]; output d is a
    function of z_<d and the context only. Starts near the identity map (shift 0, scale 1)."""

    def __init__(self, dims: int, width: int, context_dim: int = 0, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        first, middle, last = made_masks(dims, width)
        self.dims, self.context_dim = dims, context_dim
        self.hidden = [MaskedDense(first, "relu"), MaskedDense(middle, "relu")]
        self.hidden_0, self.hidden_1 = self.hidden  # named: tf.train.Checkpoint skips lists
        self.out = MaskedDense(last)
        self.out.build((None, width))  # built first: the order of the seeded initial draws
        self.out.kernel.assign(self.out.kernel * 0.01)
        self.hidden[0].build((None, dims))
        self.hidden[1].build((None, width))
        if context_dim:  # the context enters the first hidden layer, unmasked
            self.context_kernel = self.add_weight(
                shape=(context_dim, width), initializer="glorot_uniform", name="context_kernel"
            )
        self.built = True

    def call(self, z, context=None):
        h = self.hidden[0].kernel * self.hidden[0].mask
        h = z @ h + self.hidden[0].bias
        if self.context_dim:
            h += context @ self.context_kernel
        h = self.hidden[1](tf.nn.relu(h))
        shift, raw = tf.split(self.out(h), 2, axis=-1)
        return shift, gaussian.soft_clamp(raw, _LOG_SCALE_BOUND)


def _named(owner, prefix: str, layers: list) -> list:
    """Sets each layer as attribute `prefix_i` (tf.train.Checkpoint does not see into lists)."""
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}_{i}", layer)
    return layers


class MaskedAutoregressiveFlow(keras.Model):
    """log p(z) of a MAF with `layers` MADEs (order reversed between them) on standardized codes.

    z is first standardized with fixed per-dimension `mean` and `std` (the training codes' for a
    sampler; 0 and 1 for the prior), so p(z) = p_flow((z - mean) / std) / prod(std).
    """

    def __init__(self, dims: int, layers: int = 4, width: int = 128, mean=None, std=None):
        super().__init__(dtype="float32")
        self.dims, self.num_layers, self.width = dims, layers, width
        self.mades = _named(self, "made", [Made(dims, width) for _ in range(layers)])
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
        """log p(z), float32 [...] in nats, for codes z float32 [..., Z]."""
        z = tf.convert_to_tensor(z, tf.float32)
        u, log_det = self.to_noise(tf.reshape(z, [-1, self.dims]))
        base = -0.5 * tf.reduce_sum(tf.square(u), -1) - 0.5 * self.dims * gaussian.LOG_2PI
        return tf.reshape(base + log_det, tf.shape(z)[:-1])

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


class InverseAutoregressiveFlow(keras.layers.Layer):
    """z_0 [..., B, Z] and a context [B, C] -> z_T: T steps z <- rev(z exp(s) + m), (m, s) =
    MADE_t(z, context). Each step is one pass; log |det dz_T/dz_0| = sum_t sum_d s_t,d."""

    def __init__(self, dims: int, layers: int, width: int, context_dim: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.dims, self.context_dim = dims, context_dim
        self.mades = _named(
            self, "made", [Made(dims, width, context_dim) for _ in range(layers)]
        )  # fmt: skip
        self.built = True

    def _flat(self, z, context):
        """z [..., B, Z] -> [N, Z] and the context broadcast to [N, C]."""
        z = tf.convert_to_tensor(z, tf.float32)
        context = tf.broadcast_to(
            tf.cast(context, tf.float32), tf.concat([tf.shape(z)[:-1], [self.context_dim]], 0)
        )
        return tf.reshape(z, [-1, self.dims]), tf.reshape(context, [-1, self.context_dim])

    def forward(self, z0, context):
        """(z_T [..., B, Z], log |det dz_T/dz_0| [..., B] nats) for z_0 float32 [..., B, Z]."""
        z, flat_context = self._flat(z0, context)
        log_det = tf.zeros_like(z[:, 0])
        for made in self.mades:
            shift, log_scale = made(z, flat_context)
            z = tf.reverse(z * tf.exp(log_scale) + shift, axis=[-1])
            log_det += tf.reduce_sum(log_scale, axis=-1)
        shape = tf.shape(z0)
        return tf.reshape(z, shape), tf.reshape(log_det, shape[:-1])

    def inverse(self, z_t, context):
        """(z_0 [..., B, Z], log |det dz_T/dz_0| [..., B]) for any z_T (Z passes per step)."""
        z, flat_context = self._flat(z_t, context)
        log_det = tf.zeros_like(z[:, 0])
        for made in reversed(self.mades):
            target = tf.reverse(z, axis=[-1])  # x exp(s(x)) + m(x) of this step's input x
            x = tf.zeros_like(target)
            for _ in range(self.dims):  # coordinate d is exact after d passes
                shift, log_scale = made(x, flat_context)
                x = (target - shift) * tf.exp(-log_scale)
            log_det += tf.reduce_sum(made(x, flat_context)[1], axis=-1)
            z = x
        shape = tf.shape(z_t)
        return tf.reshape(z, shape), tf.reshape(log_det, shape[:-1])
