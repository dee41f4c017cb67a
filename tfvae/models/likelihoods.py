"""Pixel likelihoods p(x|z) as TFP distributions over images x in [0, 1], event [H, W, C].

Every distribution is built from float32 parameters (the decoder casts its output), so
log-probabilities are float32 nats even when the network runs in float16 or bfloat16.

- 'bernoulli': logits per channel. Its log_prob on non-binary pixels is a cross-entropy, not a
  log-likelihood of the data (units.convention_or_none gives it no bits/dim).
- 'gaussian': a density on [0, 1]^D, learned or fixed scale.
- 'discretized_logistic': a probability over the 256 values {0, 1/255, ..., 1} of each 8-bit
  channel (a logistic quantized into unit bins centred on the pixel values, the tails folded into
  0 and 255), so its log_prob is an honest discrete log-likelihood.
- 'discretized_logistic_mixture': PixelCNN++'s mixture of discretized logistics over the 256^3
  colours of a pixel, the channels coupled linearly (DiscretizedLogisticMixture): also discrete.

Density likelihoods ('gaussian', see DENSITIES) are scored at uniformly dequantized pixels
x = (v + u) / 256 by the train step and the evaluation (see evaluation.bounds), so their bits/dim
bound the discrete NLL; the others are scored at the pixel values v / 255 themselves.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models.mixture_kernel import coupled_means, fused_log_prob

tfd = tfp.distributions
tfb = tfp.bijectors

# Default smallest std/scale in [0,1] pixel units, PixelCNN++'s clamp of the log-scale at -7 in
# [-1, 1] units: it caps one channel's probability under a sharp discretized logistic at
# sigmoid(1/510s) - sigmoid(-1/510s) = 0.975 (0.037 bits); `--likelihood_scale_floor` sets it.
DEFAULT_SCALE_FLOOR = 4.5e-4
_TOP = 255.0  # largest 8-bit pixel value
DENSITIES = ("gaussian",)  # likelihoods that are densities on [0, 1]^D: scored dequantized


def is_density(likelihood: str) -> bool:
    """True for likelihoods that are densities on [0, 1]^D (trained and scored dequantized)."""
    return likelihood in DENSITIES


def dequantize(x, u):
    """Uniformly dequantized pixels (v + u) / 256, float32 in [0, 1), v = round(255 x).

    Args:
      x: float32 [..., H, W, C] pixel values v / 255 in [0, 1] (the model's input convention).
      u: float32 [K, ..., H, W, C] (or broadcastable), uniform noise in [0, 1).
    """
    return (tf.round(tf.convert_to_tensor(x, tf.float32) * _TOP) + u) / (_TOP + 1.0)


def _discretized_logistic_log_prob(level, loc_levels, inverse_scale):
    """log P(level) of Logistic(loc, scale) quantized into unit bins, tails folded, float32.

    `level` holds integers 0..255, `loc_levels` is in pixel levels and `inverse_scale` = 1 / scale
    in levels, all broadcastable. With a, b the upper and lower bin edges standardised by the scale,
    log P = [v<255] log sigmoid(a) + [v>0] log(1 - sigmoid(b)) + [0<v<255] log(1 - exp(-(a - b))),
    since sigmoid(a) - sigmoid(b) factorises that way.
    """
    centred = (level - loc_levels) * inverse_scale
    log_below_upper = -tf.nn.softplus(-(centred + 0.5 * inverse_scale))  # log sigmoid(a)
    log_above_lower = -tf.nn.softplus(centred - 0.5 * inverse_scale)  # log(1 - sigmoid(b))
    log_bin_factor = tf.math.log(-tf.math.expm1(-inverse_scale))  # log(1 - exp(-(a - b)))
    not_top = tf.cast(level < _TOP, tf.float32)
    not_bottom = tf.cast(level > 0, tf.float32)
    return (
        not_top * log_below_upper
        + not_bottom * log_above_lower
        + not_top * not_bottom * log_bin_factor
    )


class DiscretizedLogistic(tfd.Distribution):
    """Logistic(loc, scale) quantized to the 256 pixel values {0, 1/255, ..., 1}.

    Scalar event; `loc` and `scale` are in [0, 1] pixel units. P(x = v/255) is the logistic's
    mass on ((v - 0.5)/255, (v + 0.5)/255], with all mass below 0.5/255 at 0 and all mass above
    254.5/255 at 1, so the 256 probabilities sum to 1.

    Sampling uses TFP's QuantizedDistribution. log_prob uses the closed form of
    `_discretized_logistic_log_prob`, equal to TFP's (tested against it in float64) and about 3x
    cheaper.
    """

    def __init__(self, loc, scale, validate_args=False, allow_nan_stats=True, name="DL"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc, dtype=tf.float32, name="loc")
            self._scale = tf.convert_to_tensor(scale, dtype=tf.float32, name="scale")
            super().__init__(
                dtype=tf.float32,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            loc=tfp.util.ParameterProperties(),
            scale=tfp.util.ParameterProperties(
                default_constraining_bijector_fn=lambda: tfb.Softplus(low=DEFAULT_SCALE_FLOOR)
            ),
        )

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    def _levels(self) -> tfd.Distribution:
        """The same distribution over the integers {0, ..., 255}."""
        logistic = tfd.Logistic(self._loc * _TOP, self._scale * _TOP)
        centred = tfd.TransformedDistribution(logistic, tfb.Shift(-0.5))  # bins (v-.5, v+.5]
        return tfd.QuantizedDistribution(centred, low=0.0, high=_TOP)

    def _event_shape(self):
        return tf.TensorShape([])

    def _log_prob(self, x):
        level = tf.round(x * _TOP)  # [..] integer pixel value 0..255
        inverse_scale = 1.0 / (self._scale * _TOP)  # in pixel levels
        return _discretized_logistic_log_prob(level, self._loc * _TOP, inverse_scale)

    def _sample_n(self, n, seed=None):
        return self._levels().sample(n, seed=seed) / _TOP

    def median(self):
        """The median pixel value, float32 in [0, 1] (exact: quantization is monotone)."""
        return tf.clip_by_value(tf.round(self._loc * _TOP), 0.0, _TOP) / _TOP


class DiscretizedLogisticMixture(tfd.Distribution):
    """PixelCNN++'s mixture of discretized logistics over the 256^3 colours of an RGB pixel.

    Batch [...], event [3]; values x = v / 255 in [0, 1]. Parameters, float32 in [0, 1] pixel
    units: `logits` [..., M] of the components; `locs`, `scales` [..., M, 3]; `coefficients`
    [..., M, 3] = (a, b, c) in [-1, 1]. Component m is, channel by channel (Salimans et al. 2017,
    their x in [-1, 1] being 2 (x - 1/2) here, their scale twice ours):
      R ~ DL(loc_R),  G ~ DL(loc_G + a (x_R - 1/2)),  B ~ DL(loc_B + b (x_R - 1/2) + c (x_G - 1/2)),
    each DL a logistic of the component's scale quantized into unit bins with its tails folded into
    0 and 255 (DiscretizedLogistic). So P(r, g, b) sums to 1 over the 256^3 colours; log_prob is
    a logsumexp over components of log-softmax weights plus the three channels' closed forms.

    Sampling draws a component, then R, G and B in turn (G and B at means shifted by the drawn
    values), exactly from the distribution. `most_probable_component_median()` is the image to
    display: in the component of largest weight, the median of R, then the median of G given that
    R, then of B given both.
    """

    def __init__(
        self,
        logits,
        locs,
        scales,
        coefficients,
        validate_args=False,
        allow_nan_stats=True,
        name="DLMixture",
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._logits = tf.convert_to_tensor(logits, tf.float32, name="logits")
            self._locs = tf.convert_to_tensor(locs, tf.float32, name="locs")
            self._scales = tf.convert_to_tensor(scales, tf.float32, name="scales")
            self._coefficients = tf.convert_to_tensor(coefficients, tf.float32, name="coefficients")
            super().__init__(
                dtype=tf.float32,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            logits=tfp.util.ParameterProperties(event_ndims=1),
            locs=tfp.util.ParameterProperties(event_ndims=2),
            scales=tfp.util.ParameterProperties(
                event_ndims=2,
                default_constraining_bijector_fn=lambda: tfb.Softplus(low=DEFAULT_SCALE_FLOOR),
            ),
            coefficients=tfp.util.ParameterProperties(
                event_ndims=2, default_constraining_bijector_fn=tfb.Tanh
            ),
        )

    @property
    def logits(self):
        return self._logits

    @property
    def locs(self):
        return self._locs

    @property
    def scales(self):
        return self._scales

    @property
    def coefficients(self):
        return self._coefficients

    def _event_shape(self):
        return tf.TensorShape([3])

    def _event_shape_tensor(self):
        return tf.constant([3], tf.int32)

    def _log_prob(self, x):
        level = tf.round(tf.convert_to_tensor(x, tf.float32) * _TOP)  # [..., 3] values 0..255
        means, _, _ = coupled_means(level[..., None, :], self._locs, self._coefficients, -1)
        log_channels = _discretized_logistic_log_prob(
            level[..., None, :], means, 1.0 / (self._scales * _TOP)
        )  # [..., M, 3]
        log_weights = tf.nn.log_softmax(self._logits, axis=-1)  # [..., M]
        return tf.reduce_logsumexp(log_weights + tf.reduce_sum(log_channels, -1), axis=-1)

    def _sample_n(self, n, seed=None):
        component_seed, noise_seed = tfp.random.split_seed(tfp.random.sanitize_seed(seed), 2)
        component = tfd.Categorical(logits=self._logits).sample(n, seed=component_seed)
        chosen = tf.one_hot(component, tf.shape(self._logits)[-1])[..., None]  # [n, ..., M, 1]
        pick = lambda p: tf.reduce_sum(chosen * p, axis=-2)  # noqa: E731  [n, ..., 3]
        locs, scales, coefficients = pick(self._locs), pick(self._scales), pick(self._coefficients)
        tiny = 1e-6  # keeps the logistic noise finite
        u = tf.random.stateless_uniform(tf.shape(locs), noise_seed, minval=tiny, maxval=1 - tiny)
        noise = scales * (tf.math.log(u) - tf.math.log1p(-u))  # logistic(0, scale) [n, ..., 3]
        return _colour_in_turn(locs + noise, coefficients)

    def most_probable_component_median(self):
        """A displayable colour, float32 [..., 3] in [0, 1] on the pixel grid (see class doc)."""
        chosen = tf.one_hot(tf.argmax(self._logits, axis=-1), tf.shape(self._logits)[-1])
        pick = lambda p: tf.reduce_sum(chosen[..., None] * p, axis=-2)  # noqa: E731  [..., 3]
        return _colour_in_turn(pick(self._locs), pick(self._coefficients))


class _DecoderOutputMixture(DiscretizedLogisticMixture):
    """The mixture of a decoder's output [..., 10 M] (`_discretized_logistic_mixture`), its
    log_prob computed from that output by compiled kernels (`mixture_kernel.fused_log_prob`):
    the same distribution, several times faster to train through than the parent's TF ops."""

    def __init__(self, output, components, scale_floor, validate_args=False, name="DLMixture"):
        parameters = dict(locals())
        m = components
        output = tf.convert_to_tensor(output, tf.float32)
        logits, locs, raw_scales, raw_coefficients = tf.split(output, [m, 3 * m, 3 * m, 3 * m], -1)
        by_component = lambda t: tf.reshape(t, tf.concat([tf.shape(t)[:-1], [m, 3]], 0))  # noqa: E731
        super().__init__(  # for sampling and display; log_prob does not use these
            logits,
            by_component(locs) + 0.5,  # [..., M, 3]
            tf.nn.softplus(by_component(raw_scales) - 3.0) + scale_floor,
            tf.tanh(by_component(raw_coefficients)),
            validate_args=validate_args,
            name=name,
        )
        self._parameters = parameters  # TFP's pattern: this class's own parameters
        self._output, self._components, self._scale_floor = output, components, scale_floor

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(output=tfp.util.ParameterProperties(event_ndims=1))

    def _log_prob(self, x):
        level = tf.round(tf.convert_to_tensor(x, tf.float32) * _TOP)  # [..., 3] values 0..255
        batch = tf.broadcast_dynamic_shape(tf.shape(level)[:-1], tf.shape(self._output)[:-1])

        def pixels_last(t):  # [..., C] -> [C, pixels]
            t = tf.broadcast_to(t, tf.concat([batch, tf.shape(t)[-1:]], 0))
            return tf.transpose(tf.reshape(t, [-1, tf.shape(t)[-1]]))

        log_prob = fused_log_prob(
            pixels_last(level), pixels_last(self._output), self._components, self._scale_floor
        )  # [pixels]
        return tf.reshape(log_prob, batch)


def _colour_in_turn(shifted_locs, coefficients):
    """R, then G, then B on the pixel grid, each the quantized value of its shifted mean.

    shifted_locs: [..., 3] component means plus any logistic noise, [0, 1] units; coefficients:
    [..., 3] (a, b, c). Returns float32 [..., 3] in {0, 1/255, ..., 1}.
    """
    on_grid = lambda y: tf.clip_by_value(tf.round(y * _TOP), 0.0, _TOP) / _TOP  # noqa: E731
    a, b, c = tf.unstack(coefficients, axis=-1)
    red = on_grid(shifted_locs[..., 0])
    green = on_grid(shifted_locs[..., 1] + a * (red - 0.5))
    blue = on_grid(shifted_locs[..., 2] + b * (red - 0.5) + c * (green - 0.5))
    return tf.stack([red, green, blue], axis=-1)


def _bernoulli(params, **_):
    return tfd.Bernoulli(logits=params, dtype=tf.float32)


def _gaussian(params, gaussian_scale, scale_floor, **_):
    if gaussian_scale > 0:
        return tfd.Normal(params, gaussian_scale)
    loc, raw_scale = tf.split(params, 2, axis=-1)
    return tfd.Normal(loc + 0.5, tf.nn.softplus(raw_scale) + scale_floor)


def _discretized_logistic(params, scale_floor, **_):
    loc, raw_scale = tf.split(params, 2, axis=-1)
    return DiscretizedLogistic(loc + 0.5, tf.nn.softplus(raw_scale - 3.0) + scale_floor)


def _discretized_logistic_mixture(params, mixture_components, scale_floor, **_):
    """[N, H, W, 10 M] -> batch [N, H, W], event [3]: M logits, then 3M locs, scales, coefs."""
    return _DecoderOutputMixture(params, mixture_components, scale_floor)


_BUILDERS = {
    "bernoulli": _bernoulli,
    "gaussian": _gaussian,
    "discretized_logistic": _discretized_logistic,
    "discretized_logistic_mixture": _discretized_logistic_mixture,
}


def parameter_channels(
    likelihood: str, gaussian_scale: float = 0.0, channels: int = 3, mixture_components: int = 10
) -> int:
    """Decoder output channels the likelihood needs per pixel.

    C for bernoulli and a fixed-scale gaussian, 2C with a learned scale or the discretized
    logistic, and 10 M for the mixture of M components over RGB (M logits, 3M locations, 3M
    scales, 3M channel coefficients).
    """
    if likelihood not in _BUILDERS:
        raise ValueError(f"Likelihood {likelihood!r} is unknown; accepted: {list(_BUILDERS)}.")
    if likelihood == "discretized_logistic_mixture":
        if channels != 3 or mixture_components < 1:
            raise ValueError(
                f"discretized_logistic_mixture needs 3 channels and >= 1 components; got "
                f"channels={channels}, mixture_components={mixture_components}."
            )
        return 10 * mixture_components
    one_per_channel = likelihood == "bernoulli" or (likelihood == "gaussian" and gaussian_scale)
    return channels if one_per_channel else 2 * channels


def make(
    likelihood: str,
    params: tf.Tensor,
    gaussian_scale: float = 0.0,
    mixture_components: int = 10,
    scale_floor: float = DEFAULT_SCALE_FLOOR,
) -> tfd.Distribution:
    """Builds p(x|z) from decoder outputs.

    Args:
      likelihood: one of 'bernoulli', 'gaussian', 'discretized_logistic',
        'discretized_logistic_mixture'.
      params: [N, H, W, P] decoder output, P = parameter_channels(...); cast to float32 here.
      gaussian_scale: fixed std for 'gaussian' in [0,1] pixel units (0 = learned).
      mixture_components: M of 'discretized_logistic_mixture'.
      scale_floor: smallest learned std/scale in [0,1] pixel units (`--likelihood_scale_floor`).

    Returns:
      A distribution with batch shape [N] and event shape [H, W, C] over x in [0, 1].
    """
    parameter_channels(likelihood, gaussian_scale, mixture_components=mixture_components)
    params = tf.cast(params, tf.float32)
    pixels = _BUILDERS[likelihood](
        params, gaussian_scale=gaussian_scale, mixture_components=mixture_components,
        scale_floor=scale_floor,
    )  # fmt: skip
    # The mixture's event is a pixel's colour [C]; the others' a single channel.
    pixel_event_ndims = len(pixels.event_shape)
    return tfd.Independent(pixels, reinterpreted_batch_ndims=3 - pixel_event_ndims)


POINT_ESTIMATES = {
    "bernoulli": "mean: the Bernoulli probabilities",
    "gaussian": "mean: the Gaussian locations, clipped to [0, 1]",
    "discretized_logistic": "median: the location rounded to the nearest of the 256 levels",
    "discretized_logistic_mixture": "median of the most probable component: R's median, then "
    "G's and B's given the channels before, each on the 256 levels",
}  # what `point_estimate` returns for each likelihood, stated in exports and figures


def point_estimate(distribution: tfd.Distribution) -> tf.Tensor:
    """A displayable image of p(x|z), float32 [N, H, W, C] in [0, 1].

    The median for the discretized logistic (its exact mean costs 256 CDFs per pixel); for the
    mixture, the medians of the most probable component's channels in turn, each given the ones
    before (DiscretizedLogisticMixture.most_probable_component_median); the mean otherwise
    (Bernoulli probabilities, Gaussian locations), clipped to [0, 1].
    """
    pixels = getattr(distribution, "distribution", distribution)
    if isinstance(pixels, DiscretizedLogistic):
        image = pixels.median()
    elif isinstance(pixels, DiscretizedLogisticMixture):
        image = pixels.most_probable_component_median()
    else:
        image = distribution.mean()
    return tf.clip_by_value(image, 0.0, 1.0)


def channel_log_probs(distribution: tfd.Distribution, channel: int, level=None) -> tf.Tensor:
    """log P(channel `channel` = v / 255 | the channels before it), v = 0..255, float32
    [N, H, W, 256] nats: what a coder codes the pixels with, channel by channel.

    Args:
      distribution: p(x|z) of `make` ('discretized_logistic' or its mixture), batch [N], event
        [H, W, C].
      channel: c in 0..C-1.
      level: float32 [N, H, W, C] pixel values 0..255 of which only the channels before c are
        read (the mixture's RGB coupling and component weights); None for c = 0.

    Raises ValueError (one line) for a likelihood that is not over the 256 levels.
    """
    pixels = getattr(distribution, "distribution", distribution)
    values = tf.range(_TOP + 1.0)  # [256] the levels
    if isinstance(pixels, DiscretizedLogistic):
        loc, scale = pixels.loc[..., channel, None], pixels.scale[..., channel, None]
        return _discretized_logistic_log_prob(values, loc * _TOP, 1.0 / (scale * _TOP))
    if not isinstance(pixels, DiscretizedLogisticMixture):
        raise ValueError(
            f"p(x|z) is a {type(pixels).__name__}; only the discrete likelihoods over 256 levels "
            "(discretized_logistic and its mixture) can be coded."
        )
    if level is None:
        level = tf.zeros(tf.concat([tf.shape(pixels.locs)[:-2], [3]], 0))
    level = tf.convert_to_tensor(level, tf.float32)[..., None, :]  # [N, H, W, 1, 3]
    means, _, _ = coupled_means(level, pixels.locs, pixels.coefficients, -1)  # [.., M, 3] levels
    inverse_scales = 1.0 / (pixels.scales * _TOP)
    log_channels = _discretized_logistic_log_prob(level, means, inverse_scales)  # [.., M, 3]
    log_weights = tf.nn.log_softmax(pixels.logits, axis=-1)  # [N, H, W, M]
    log_weights += tf.reduce_sum(log_channels[..., :channel], -1)  # given the channels before
    log_weights -= tf.reduce_logsumexp(log_weights, -1, keepdims=True)
    log_values = _discretized_logistic_log_prob(
        values, means[..., channel, None], inverse_scales[..., channel, None]
    )  # [N, H, W, M, 256]
    return tf.reduce_logsumexp(log_weights[..., None] + log_values, axis=-2)
