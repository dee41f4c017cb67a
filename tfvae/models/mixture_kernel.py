"""The compiled log-likelihood kernel of PixelCNN++'s mixture of discretized logistics.

`fused_log_prob` scores levels under the mixture straight from a decoder's output, pixels last,
as one XLA kernel that computes the gradient with respect to that output beside the value, in
closed form from the same exponentials (`_value_and_gradient`); `coupled_means` is the channel
coupling it shares with `likelihoods.DiscretizedLogisticMixture`. All float32, nats.
"""

from __future__ import annotations

import functools

import tensorflow as tf
from tensorflow.python.eager import record  # whether a tape may be recording

_TOP = 255.0  # largest 8-bit pixel value (as in likelihoods)


def _bin_log_mass(level, mean, inverse_scale):
    """The quantized logistic's log P(level) in nats and its derivatives, float32.

    level (integers 0..255), mean (in levels) and inverse_scale (1 / scale, per level) broadcast
    to one shape, that of the three results (log_prob, d_mean, d_inverse_scale): the quantity of
    `likelihoods._discretized_logistic_log_prob` and its derivatives with respect to the mean
    and 1 / scale, for the compiled mixture kernel. With u, l = (v +- 1/2 - mean) / scale the
    bin's standardised edges,
      log P = -softplus(-u) [v < 255] - softplus(l) [v > 0] + log(1 - e^(-1/s)) [0 < v < 255],
    and the derivatives reuse its exponentials: d/du = sigmoid(-u), d/dl = -sigmoid(l), and the
    last term's d/d(1/s) = e^(-1/s) / (1 - e^(-1/s)). Seven transcendental calls give all three.
    """
    above_upper = level + 0.5 - mean  # v + 1/2 - mean, in levels
    above_lower = level - 0.5 - mean
    upper, lower = above_upper * inverse_scale, above_lower * inverse_scale
    upper_decay, lower_decay = tf.exp(-tf.abs(upper)), tf.exp(-tf.abs(lower))
    not_top, not_bottom = level < _TOP, level > 0.0
    interior = tf.logical_and(not_top, not_bottom)
    zero = tf.zeros_like(upper)
    width_decay = tf.math.expm1(-inverse_scale)  # e^(-1/s) - 1, in [-1, 0)
    log_prob = (
        tf.where(not_top, -(tf.maximum(-upper, 0.0) + tf.math.log1p(upper_decay)), zero)
        + tf.where(not_bottom, -(tf.maximum(lower, 0.0) + tf.math.log1p(lower_decay)), zero)
        + tf.where(interior, tf.math.log(-width_decay), zero)
    )
    below_upper = tf.where(  # sigmoid(-u), 0 for the top bin
        not_top, tf.where(upper >= 0.0, upper_decay, 1.0) / (1.0 + upper_decay), zero
    )
    below_lower = tf.where(  # sigmoid(l), 0 for the bottom bin
        not_bottom, tf.where(lower >= 0.0, 1.0, lower_decay) / (1.0 + lower_decay), zero
    )
    d_mean = (below_lower - below_upper) * inverse_scale
    d_inverse_scale = (
        above_upper * below_upper
        - above_lower * below_lower
        + tf.where(interior, tf.exp(-inverse_scale) / -width_decay, zero)  # not 1 + expm1
    )
    return log_prob, d_mean, d_inverse_scale


def fused_log_prob(level, output, components, scale_floor):
    """log P [P] of levels [3, P] under the mixture of decoder output [10 M, P], differentiable
    with respect to `output`.

    Elementwise work over [3, M, P] is bound by memory traffic and transcendental calls as
    separate TF kernels (each op a pass over the whole array), so it runs as one XLA-compiled
    kernel, pixels last where they vectorise. Where a gradient may be taken (a tape is
    recording), that kernel computes d log P / d output beside the value from the same
    exponentials, and the backward pass only scales it by the upstream gradient; otherwise the
    value alone is computed, and a gradient asked for later (a tape outside a traced function)
    runs the kernel again.
    """
    options = dict(components=components, scale_floor=scale_floor)

    @tf.custom_gradient
    def log_prob(output):
        if record.could_possibly_record():
            value, slopes = _compiled_value_and_gradient(level, output, **options)
        else:
            value, slopes = _compiled_value(level, output, **options), None

        def gradient(upstream):
            kept = (
                slopes
                if slopes is not None
                else _compiled_value_and_gradient(level, output, **options)[1]
            )
            return kept * upstream[None]

        return value, gradient

    return log_prob(output)


def coupled_means(level, locs, coefficients, channel_axis=1):
    """Component means in levels given the colours `level`, and the red and green values - 1/2
    that the coefficients multiply. Shapes are [M, 3, P] (level [1, 3, P]) pixels last, or, with
    channel_axis=-1, the parent class's [..., M, 3] (level [..., 1, 3])."""
    a, b, c = tf.unstack(coefficients, axis=channel_axis)  # each [M, P] or [..., M]
    red, green, _ = tf.unstack(level / _TOP - 0.5, axis=channel_axis)  # each [1, P] or [..., 1]
    shift_green, shift_blue = a * red, b * red + c * green
    shifts = tf.stack([tf.zeros_like(shift_green), shift_green, shift_blue], axis=channel_axis)
    return (locs + shifts) * _TOP, red, green


def _value_and_gradient(level, output, components, scale_floor, with_gradient=True):
    """log P [P] in nats of levels [3, P] (integers 0..255) under the mixture of decoder output
    [10 M, P], pixels last: M logits, then 3 M each of loc - 1/2 ([0, 1] units), raw scales
    (scale = softplus(raw - 3) + scale_floor) and raw coefficients (tanh(raw)), component-major.

    Returns log P alone when not with_gradient; otherwise (log P, d log P_p / d output[:, p]
    [10 M, P]), the gradient in closed form from the same terms: d/d logits = r - softmax(logits)
    for the components' responsibilities r, and each channel's derivatives (`_bin_log_mass`),
    times r, pass through its coupled mean to the coefficients and through softplus and tanh to
    the raw scales and coefficients."""
    m = components
    logits, locs, raw_scales, raw_coefficients = tf.split(output, [m, 3 * m, 3 * m, 3 * m], 0)
    by_channel = lambda t: tf.reshape(t, [m, 3, -1])  # noqa: E731  [M, 3, P]
    shifted_raw_scales = by_channel(raw_scales) - 3.0
    scale_decay = tf.exp(-tf.abs(shifted_raw_scales))
    scales = tf.maximum(shifted_raw_scales, 0.0) + tf.math.log1p(scale_decay) + scale_floor
    inverse_scales = 1.0 / (scales * _TOP)  # in levels
    coefficients = tf.tanh(by_channel(raw_coefficients))
    means, red, green = coupled_means(level[None], by_channel(locs) + 0.5, coefficients)
    log_channels, d_means, d_inverse_scales = _bin_log_mass(level[None], means, inverse_scales)
    log_weights = tf.nn.log_softmax(logits, axis=0)  # [M, P]
    log_components = log_weights + tf.reduce_sum(log_channels, 1)  # [M, P]
    log_prob = tf.reduce_logsumexp(log_components, axis=0)  # [P]
    if not with_gradient:
        return log_prob
    responsibilities = tf.exp(log_components - log_prob)  # [M, P]
    d_logits = responsibilities - tf.exp(log_weights)
    responsibilities = responsibilities[:, None, :]  # [M, 1, P]
    d_locs = d_means * (responsibilities * _TOP)  # [M, 3, P]
    softplus_slope = tf.where(shifted_raw_scales >= 0.0, 1.0, scale_decay) / (1.0 + scale_decay)
    d_raw_scales = (  # d(1/(255 s)) / ds = -(1/(255 s)) / s
        d_inverse_scales * responsibilities * (-inverse_scales / scales) * softplus_slope
    )
    _, d_green, d_blue = tf.unstack(d_locs, axis=1)  # each [M, P]: d/d shift = d/d loc
    d_coefficients = tf.stack([d_green * red, d_blue * red, d_blue * green], axis=1)
    d_raw_coefficients = d_coefficients * (1.0 - tf.square(coefficients))
    by_component = lambda t: tf.reshape(t, [3 * m, -1])  # noqa: E731
    gradient = tf.concat(
        [
            d_logits,
            by_component(d_locs),
            by_component(d_raw_scales),
            by_component(d_raw_coefficients),
        ],
        axis=0,
    )
    return log_prob, gradient


_compiled_value = tf.function(
    functools.partial(_value_and_gradient, with_gradient=False), jit_compile=True, autograph=False
)
_compiled_value_and_gradient = tf.function(_value_and_gradient, jit_compile=True, autograph=False)
