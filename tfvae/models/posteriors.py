"""Posteriors q(z|x) of the encoder and the two operations every caller needs of them.

- `diagonal` (the default): a TFP `MultivariateNormalDiag`, z = loc + scale * eps.
- `iaf`: `InverseAutoregressivePosterior`, the diagonal Gaussian's draw z_0 pushed through an
  inverse autoregressive flow conditioned on the encoder's context (Kingma et al. 2016):
  log q(z_T|x) = log N(z_0; loc, scale^2) - log |det dz_T/dz_0|.

Both are driven by standard-normal noise eps [K, B, Z]: `draw(q, eps)` gives z and its own
log q(z|x), so the train step and the evaluation draw eps outside the replicas and XLA for
either. `code(q)` is the zero-noise code (eps = 0), the code tools show and traverse: the mean of
the diagonal Gaussian, the flow of the base mean for the IAF.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class InverseAutoregressivePosterior:
    """q(z|x) = IAF(z_0; context), z_0 ~ N(loc, diag(scale^2)): batch [B], event [Z], float32.

    Args:
      base: the diagonal Gaussian q(z_0|x), a tfd.MultivariateNormalDiag with batch [B].
      context: float32 [B, C], the encoder's features the flow is conditioned on.
      flow: a `flows.InverseAutoregressiveFlow`.
    """

    def __init__(self, base, context, flow):
        self.base, self.context, self.flow = base, context, flow

    @property
    def batch_shape(self):
        return self.base.batch_shape

    @property
    def event_shape(self):
        return self.base.event_shape

    def draw(self, noise):
        """(z [K, B, Z], log q(z|x) [K, B] nats) for standard-normal noise float32 [K, B, Z]."""
        z0 = self.base.bijector.forward(noise)
        z, log_det = self.flow.forward(z0, self.context)
        return z, tf.cast(self.base.log_prob(z0), tf.float32) - log_det

    def sample(self, sample_shape=(), seed=None):
        """z float32 [*sample_shape, B, Z] (seed: int [2] stateless, or None)."""
        leading = tf.reshape(tf.cast(sample_shape, tf.int32), [-1])
        shape = tf.concat([leading, tf.shape(self.base.loc)], 0)
        return self.draw(standard_noise(shape, seed))[0]

    def log_prob(self, z):
        """log q(z|x), float32 [..., B] nats, for any z float32 [..., B, Z] (inverts the flow)."""
        z0, log_det = self.flow.inverse(z, self.context)
        return tf.cast(self.base.log_prob(z0), tf.float32) - log_det

    def code(self):
        """The zero-noise code flow(loc), float32 [B, Z]."""
        return self.flow.forward(self.base.loc, self.context)[0]


def standard_noise(shape, seed=None):
    """float32 N(0, 1) noise of `shape`: stateless Philox from seed int [2], or stateful."""
    if seed is None:
        return tf.random.normal(shape)
    return tf.random.stateless_normal(shape, tf.cast(seed, tf.int64), alg="philox")


def draw(q, noise):
    """z [K, B, Z] and its log q(z|x) [K, B] (float32 nats) from noise float32 [K, B, Z]."""
    if isinstance(q, InverseAutoregressivePosterior):
        return q.draw(noise)
    if not isinstance(q, tfd.MultivariateNormalLinearOperator):
        raise TypeError(f"Given noise needs a Gaussian or IAF q(z|x); got {type(q).__name__}.")
    z = q.bijector.forward(noise)
    return z, tf.cast(q.log_prob(z), tf.float32)


def takes_noise(q) -> bool:
    """True if q's model draws z from given noise (`draw`, or a model's own `terms_from_noise`
    for a q that declares `takes_noise`): the evaluation then fixes the noise per example."""
    kinds = (InverseAutoregressivePosterior, tfd.MultivariateNormalLinearOperator)
    return isinstance(q, kinds) or getattr(q, "takes_noise", False)


def top_group(q, noise):
    """(mean, scale, z) float32 [B, top_dim] of q's top group, z drawn from noise float32
    [B, top_dim]: a diagonal Gaussian's whole code (z = mean + scale * noise); a hierarchy's
    top group in code units (its `top_group()`); an IAF, which has no closed-form moments, gives
    its draw for the mean and scale 0."""
    if hasattr(q, "top_group"):
        mean, scale = q.top_group()
        return mean, scale, mean + scale * noise
    z = draw(q, noise[None])[0][0]
    if isinstance(q, InverseAutoregressivePosterior):
        return z, tf.zeros_like(z), z
    return tf.cast(q.mean(), tf.float32), tf.cast(q.stddev(), tf.float32), z


def code(q):
    """The zero-noise code of each example, float32 [B, Z]: a Gaussian's mean, the IAF's
    flow of its base mean, a hierarchy's groups at their means (its `code()`)."""
    if hasattr(q, "code"):
        return q.code()
    return q.mean()
