"""The diagonal Gaussian's log-density and the soft clamp of its log-scale, once for the package.

Every latent Gaussian the models and samplers score (a hierarchy's groups, the mixture and
VampPrior components, a sampler's mixture) uses `diagonal_log_prob`; log-densities are float32
nats when the inputs are float32.
"""

from __future__ import annotations

import math

import tensorflow as tf

LOG_2PI = math.log(2.0 * math.pi)


def diagonal_log_prob(z, loc, log_scale, axis=-1):
    """sum over `axis` of log N(z; loc, exp(log_scale)^2), nats.

    Args:
      z, loc, log_scale: tensors broadcasting to one shape [..., Z] (e.g. z [..., 1, Z] against
        component parameters [C, Z]).
      axis: the axis or axes summed over (the event: [Z], or [H, W, C] of a latent group).

    Returns:
      The log-density with `axis` reduced, in z's dtype (float32 nats for float32 inputs).
    """
    standardized = (z - loc) * tf.exp(-log_scale)
    return tf.reduce_sum(-0.5 * tf.square(standardized) - log_scale - 0.5 * LOG_2PI, axis=axis)


def soft_clamp(log_scale, bound=5.0):
    """bound tanh(log_scale / bound): a log-scale kept within +-bound (NVAE's soft clamp)."""
    return bound * tf.tanh(log_scale / bound)
