"""DCGAN-symmetric convolutional encoder and decoder returning TFP distributions.

Encoder: `num_stages` stride-2 convolutions from the image down to 4x4 (channels width, 2 width,
4 width, ...), batch normalisation after all but the first, leaky ReLU (slope 0.2), then a dense
layer to the mean and softplus scale of a diagonal Gaussian q(z|x).

Decoder: the mirror image. A dense layer to a 4x4 map with the widest channels, then
`num_stages` upsampling blocks halving the channels (batch norm + ReLU, as DCGAN's generator), the
last one producing the likelihood's parameters (for the mixture, by default, a map of
`mixture_head_channels` followed by batch norm, ReLU and a 1x1 convolution to them). The three
upsampling blocks have the same stages, widths and parameter counts:
- 'deconv':   Conv2DTranspose(kernel, stride 2)
- 'nearest':  UpSampling2D(2, nearest) + Conv2D(kernel)
- 'bilinear': UpSampling2D(2, bilinear) + Conv2D(kernel)

Layers compute in `dtype` (a Keras dtype policy name such as 'mixed_float16'); distribution
parameters are cast to float32 before any distribution is built.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models import flows, likelihoods, posteriors

tfd = tfp.distributions

UPSAMPLING_INTERPOLATION = {"nearest": "nearest", "bilinear": "bilinear"}


def _tracked(owner, prefix, layers):
    """Sets each layer as an attribute `prefix_i` and returns the list.

    tf.train.Checkpoint does not see into Keras 3's tracked lists, so layers held only in a list
    would be missing from checkpoints (batch-norm statistics included).
    """
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}_{i}", layer)
    return layers


def _batch_norm(dtype, synchronized):
    return BatchNorm(momentum=0.9, synchronized=synchronized, dtype=dtype)


class BatchNorm(keras.layers.Layer):
    """Batch normalisation over [N, H, W] of [N, H, W, C] features, statistics in float32.

    On one replica it runs TF's fused kernel (oneDNN on CPU, cuDNN on GPU), about 3x faster
    than keras.layers.BatchNormalization's unfused ops in Keras 3. With `synchronized=True` the
    batch mean and variance are all-reduced over replicas, so N replicas normalise exactly as one
    device holding the global batch. Moving statistics track the biased batch variance in both.
    """

    def __init__(self, momentum=0.9, epsilon=1e-3, synchronized=False, dtype=None):
        super().__init__(dtype=dtype)
        self.momentum, self.epsilon, self.synchronized = momentum, epsilon, synchronized

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")
        statistic = dict(shape=channels, trainable=False, autocast=False)
        self.moving_mean = self.add_weight(initializer="zeros", name="moving_mean", **statistic)
        self.moving_variance = self.add_weight(
            initializer="ones", name="moving_variance", **statistic
        )

    def call(self, x, training=False):
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if not training:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                self.moving_mean,
                self.moving_variance,
                self.epsilon,
                is_training=False,
            )
            return y
        if self.synchronized:
            mean, variance = _all_reduced_moments(tf.cast(x, tf.float32))
            inverse = tf.math.rsqrt(variance + self.epsilon) * gamma
            y = tf.cast(x, tf.float32) * inverse + (beta - mean * inverse)
            y = tf.cast(y, x.dtype)
        else:
            y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            variance = unbiased * (count - 1.0) / count  # the kernel returns the unbiased one
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        return y


def _all_reduced_moments(x):
    """Mean and biased variance over [N, H, W] of x [N, H, W, C] across all replicas."""
    context = tf.distribute.get_replica_context()
    sums = context.all_reduce(
        "SUM",
        tf.stack(
            [
                tf.reduce_sum(x, axis=[0, 1, 2]),
                tf.reduce_sum(tf.square(x), axis=[0, 1, 2]),
                tf.fill([tf.shape(x)[-1]], tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)),
            ]
        ),
    )
    mean = sums[0] / sums[2]
    return mean, tf.maximum(sums[1] / sums[2] - tf.square(mean), 0.0)


class Encoder(keras.Model):
    """x float [B, H, W, 3] in [0, 1] -> q(z|x), batch [B], event [Z]: a diagonal Gaussian, or
    with posterior='iaf' an inverse autoregressive flow on it (`posteriors`)."""

    def __init__(
        self,
        latent_dim=128,
        width=64,
        num_stages=4,
        kernel_size=4,
        scale_floor=1e-4,
        dtype="float32",
        synchronized_batch_norm=False,
        posterior="diagonal",
        flow_layers=2,
        flow_width=128,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        if posterior not in ("diagonal", "iaf"):
            raise ValueError(f"Posterior {posterior!r} is unknown; accepted: diagonal, iaf.")
        self.latent_dim = latent_dim
        self.scale_floor = scale_floor
        self.posterior = posterior
        self.convs = _tracked(
            self,
            "conv",
            [
                keras.layers.Conv2D(
                    width * 2**stage,
                    kernel_size,
                    strides=2,
                    padding="same",
                    use_bias=stage == 0,  # the other stages are followed by batch norm
                    dtype=dtype,
                )
                for stage in range(num_stages)
            ],
        )
        self.norms = _tracked(
            self,
            "norm",
            [_batch_norm(dtype, synchronized_batch_norm) for _ in range(num_stages - 1)],
        )
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.to_params = keras.layers.Dense(2 * latent_dim, dtype=dtype)
        if posterior == "iaf":  # the flow's context: a linear map of the same features
            self.to_context = keras.layers.Dense(flow_width, dtype=dtype)
            self.flow = flows.InverseAutoregressiveFlow(
                latent_dim, flow_layers, flow_width, context_dim=flow_width
            )

    def call(self, x, training=False):
        h = x * 2.0 - 1.0  # [B, H, W, 3] in [-1, 1]
        for stage, conv in enumerate(self.convs):
            h = conv(h)  # [B, H/2^(s+1), W/2^(s+1), width 2^s]
            if stage:
                h = self.norms[stage - 1](h, training=training)
            h = tf.nn.leaky_relu(h, 0.2)
        features = self.flatten(h)
        params = tf.cast(self.to_params(features), tf.float32)  # [B, 2Z]
        loc, raw_scale = tf.split(params, 2, axis=-1)
        scale = tf.nn.softplus(raw_scale) + self.scale_floor
        q = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
        if self.posterior == "diagonal":
            return q
        context = tf.cast(self.to_context(features), tf.float32)  # [B, flow_width]
        return posteriors.InverseAutoregressivePosterior(q, context, self.flow)


class Decoder(keras.Model):
    """z float [N, Z] -> p(x|z), a TFP distribution with batch [N], event [H, W, 3]."""

    def __init__(
        self,
        width=64,
        num_stages=4,
        kernel_size=4,
        upsampling="deconv",
        likelihood="discretized_logistic",
        gaussian_scale=0.0,
        mixture_components=10,
        dtype="float32",
        synchronized_batch_norm=False,
        scale_floor=likelihoods.DEFAULT_SCALE_FLOOR,
        mixture_head_channels=0,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        self.scale_floor = scale_floor
        if upsampling not in ("deconv", *UPSAMPLING_INTERPOLATION):
            raise ValueError(
                f"Upsampling {upsampling!r} is unknown; accepted: deconv, nearest, bilinear."
            )
        self.likelihood = likelihood
        self.gaussian_scale = gaussian_scale
        self.mixture_components = mixture_components
        out_channels = likelihoods.parameter_channels(
            likelihood, gaussian_scale, mixture_components=mixture_components
        )
        # The mixture's many parameters per pixel (10 M) from a 1x1 convolution of a narrower
        # full-resolution map, instead of the last upsampling block's K^2-wide kernels.
        head = mixture_head_channels if likelihood == "discretized_logistic_mixture" else 0
        self.head = keras.layers.Conv2D(out_channels, 1, dtype=dtype) if head else None
        block_channels = head or out_channels
        top_channels = width * 2 ** (num_stages - 1)
        self.to_map = keras.layers.Dense(4 * 4 * top_channels, use_bias=False, dtype=dtype)
        self.reshape = keras.layers.Reshape((4, 4, top_channels), dtype=dtype)
        self.map_norm = _batch_norm(dtype, synchronized_batch_norm)
        self.blocks = _tracked(
            self,
            "block",
            [
                _upsampling_block(
                    upsampling,
                    width * 2 ** (stage - 1) if stage else block_channels,
                    kernel_size,
                    use_bias=stage == 0 and not head,  # the others are followed by batch norm
                    dtype=dtype,
                )
                for stage in reversed(range(num_stages))
            ],
        )
        self.norms = _tracked(
            self,
            "norm",
            [
                _batch_norm(dtype, synchronized_batch_norm)
                for _ in range(num_stages - 1 + bool(head))
            ],
        )

    def call(self, z, training=False):
        h = self.reshape(self.to_map(z))  # [N, 4, 4, width 2^(S-1)]
        h = tf.nn.relu(self.map_norm(h, training=training))
        for stage, block in enumerate(self.blocks):
            h = block(h)  # [N, 2h, 2w, c / 2], the last block: [N, H, W, P]
            if stage < len(self.norms):
                h = tf.nn.relu(self.norms[stage](h, training=training))
        if self.head is not None:
            h = self.head(h)  # [N, H, W, P]
        return likelihoods.make(  # h: [N, H, W, P] params
            self.likelihood, h, self.gaussian_scale, self.mixture_components, self.scale_floor
        )


def _upsampling_block(upsampling, channels, kernel_size, use_bias, dtype):
    """A block that doubles height and width: [N, h, w, c] -> [N, 2h, 2w, channels]."""
    if upsampling == "deconv":
        return keras.layers.Conv2DTranspose(
            channels, kernel_size, strides=2, padding="same", use_bias=use_bias, dtype=dtype
        )
    return ResizeConv(channels, kernel_size, UPSAMPLING_INTERPOLATION[upsampling], use_bias, dtype)


class ResizeConv(keras.layers.Layer):
    """UpSampling2D(2, interpolation) then a same-padded Conv2D: [N, h, w, c] -> [N, 2h, 2w, f]."""

    def __init__(self, filters, kernel_size, interpolation, use_bias=True, dtype=None):
        super().__init__(dtype=dtype)
        self.upsample = keras.layers.UpSampling2D(2, interpolation=interpolation, dtype=dtype)
        self.conv = keras.layers.Conv2D(
            filters, kernel_size, padding="same", use_bias=use_bias, dtype=dtype
        )

    def call(self, x):
        return self.conv(self.upsample(x))
