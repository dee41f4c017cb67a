"""Posteriors q(z|x): one interface that every caller asks, whatever the model's posterior is.

Every posterior a model's `encode` returns is a `Posterior`, driven by standard-normal noise eps
so the train step and the evaluation draw eps outside the replicas and XLA:
- `draw(noise)`: z and its own log q(z|x) from eps float32 [K, B, Z];
- `code()`: the zero-noise code (eps = 0), float32 [B, Z]: the code tools show, traverse and
  decode, and samplers are fitted to;
- `moments()`: {"loc", "scale"} float32 [B, Z] (and "code" where the code is not the loc);
- `top_group(noise)`: the top latent group's mean, scale and a draw, in code units.
A hierarchy's posterior also gives each group's conditional given the groups above, through its
model's `walk` (`hierarchy.HierarchicalPosterior`).

The kinds here:
- `GaussianPosterior`: a TFP multivariate normal (the encoder's diagonal Gaussian, or any
  `tfd.MultivariateNormalLinearOperator` an encoder returns), z = loc + scale eps.
- `InverseAutoregressivePosterior`: the diagonal Gaussian's draw z_0 pushed through an inverse
  autoregressive flow conditioned on the encoder's context (Kingma et al. 2016):
  log q(z_T|x) = log N(z_0; loc, scale^2) - log |det dz_T/dz_0|.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def standard_noise(shape, seed=None):
    """float32 N(0, 1) noise of `shape`: stateless Philox from seed int [2], or stateful."""
    if seed is None:
        return tf.random.normal(shape)
    return tf.random.stateless_normal(shape, tf.cast(seed, tf.int64), alg="philox")


class Posterior:
    """The interface (see the module doc); subclasses define `draw`, `code` and `moments`."""

    def draw(self, noise):
        """(z float32 [K, B, Z], log q(z|x) float32 [K, B] nats) from noise float32 [K, B, Z]."""
        raise NotImplementedError

    def code(self):
        """The zero-noise code, float32 [B, Z]."""
        raise NotImplementedError

    def moments(self) -> dict:
        """{"loc", "scale"} float32 [B, Z] (and "code" [B, Z] where it is not the loc)."""
        raise NotImplementedError

    def top_group(self, noise):
        """(mean, scale, z) float32 [B, top_dim] of the top latent group, z drawn from noise
        float32 [B, top_dim]. A one-group posterior's top group is its whole code."""
        moments = self.moments()
        mean, scale = moments["loc"], moments["scale"]
        return mean, scale, mean + scale * noise

    def sample(self, sample_shape=(), seed=None):
        """z float32 [*sample_shape, B, Z] (seed: int [2] stateless, or None)."""
        leading = tf.reshape(tf.cast(sample_shape, tf.int32), [-1])
        shape = tf.concat([leading, tf.shape(self.code())], 0)
        return self.draw(standard_noise(shape, seed))[0]


class GaussianPosterior(Posterior):
    """q(z|x) = N(loc, S S^T) of a TFP multivariate normal `distribution` (batch [B], event [Z]):
    z = loc + S eps; log-densities float32 nats."""

    def __init__(self, distribution):
        self.distribution = distribution

    @property
    def batch_shape(self):
        return self.distribution.batch_shape

    @property
    def event_shape(self):
        return self.distribution.event_shape

    def draw(self, noise):
        z = self.distribution.bijector.forward(noise)
        return z, tf.cast(self.distribution.log_prob(z), tf.float32)

    def log_prob(self, z):
        """log q(z|x), float32 [..., B] nats, for z float32 [..., B, Z]."""
        return tf.cast(self.distribution.log_prob(z), tf.float32)

    def code(self):
        return self.moments()["loc"]

    def moments(self) -> dict:
        """A diagonal Gaussian's own parameters, read directly (its mean() and stddev() add
        broadcast ops that ONNX has no counterpart for); any other, its mean and stddev."""
        if isinstance(self.distribution, tfd.MultivariateNormalDiag):
            return {"loc": tf.identity(self.distribution.loc),
                    "scale": tf.identity(self.distribution.scale.diag)}  # fmt: skip
        return {"loc": self.distribution.mean(), "scale": self.distribution.stddev()}

    def sample(self, sample_shape=(), seed=None):
        return self.distribution.sample(sample_shape, seed=seed)


class InverseAutoregressivePosterior(Posterior):
    """q(z|x) = IAF(z_0; context), z_0 ~ N(loc, diag(scale^2)): batch [B], event [Z], float32.

    Args:
      base: the Gaussian q(z_0|x), a TFP multivariate normal with batch [B].
      context: float32 [B, C], the encoder's features the flow is conditioned on.
      flow: a `flows.InverseAutoregressiveFlow`.
    """

    def __init__(self, base, context, flow):
        self.base, self.context, self.flow = GaussianPosterior(base), context, flow

    @property
    def batch_shape(self):
        return self.base.batch_shape

    @property
    def event_shape(self):
        return self.base.event_shape

    def draw(self, noise):
        z0, log_q0 = self.base.draw(noise)
        z, log_det = self.flow.forward(z0, self.context)
        return z, log_q0 - log_det

    def log_prob(self, z):
        """log q(z|x), float32 [..., B] nats, for any z float32 [..., B, Z] (inverts the flow)."""
        z0, log_det = self.flow.inverse(z, self.context)
        return self.base.log_prob(z0) - log_det

    def code(self):
        """The zero-noise code flow(loc), float32 [B, Z]."""
        return self.flow.forward(self.base.code(), self.context)[0]

    def moments(self) -> dict:
        """The zero-noise code and the base Gaussian's loc and scale (the flow has no
        closed-form moments)."""
        return {"code": self.code(), **self.base.moments()}

    def top_group(self, noise):
        """The draw of noise stands for the mean, with scale 0 (no closed-form moments)."""
        z = self.draw(noise[None])[0][0]
        return z, tf.zeros_like(z), z


def as_posterior(q) -> Posterior:
    """An encoder's output as a `Posterior`: as it is, or a TFP multivariate normal wrapped in
    `GaussianPosterior` (the encoder contract: any Gaussian q(z|x) with batch [B], event [Z])."""
    if isinstance(q, Posterior):
        return q
    if not isinstance(q, tfd.MultivariateNormalLinearOperator):
        raise TypeError(
            f"An encoder must return a Gaussian q(z|x) (a TFP MultivariateNormal...) or a "
            f"tfvae Posterior; got {type(q).__name__}."
        )
    return GaussianPosterior(q)
