"""Priors p(z) of the VAE: N(0, I) (the default) and three learned ones, one interface.

Every prior answers `log_prob(z)` (float32 [...] nats for z float32 [..., Z]) and
`sample(n, seed, temperature)` (float32 [n, Z]; seed int [2] stateless, or None). A hierarchy's
prior over its noise is the standard normal, and it gives each group's conditional prior given
the groups above through its model's `walk`.

- `normal`: N(0, I) (`StandardNormal`).
- `mog`: a learned mixture of diagonal Gaussians, sum_c w_c N(m_c, diag(s_c^2)).
- `vamp`: the VampPrior (Tomczak & Welling 2018), (1/C) sum_c q(z|u_c) with C learned
  pseudo-images u_c in [0, 1] encoded by the model's own encoder (in inference mode, so the prior
  does not depend on the batch); with an IAF posterior each q(z|u_c) is one.
- `flow`: a masked autoregressive flow on N(0, I) (`flows.MaskedAutoregressiveFlow`).

A prior is part of the model: its weights train with the encoder and decoder, so log p(x), the
IWAE bound and bits/dim stay estimates of the model they describe.
Temperature T scales the noise of a draw: z ~ N(0, T^2 I) for the standard normal; for the
mixtures a component is picked as at T = 1 and z = m_c + T s_c eps (for the VampPrior m_c, s_c
are q(z|u_c)'s, and with an IAF posterior z is its flow of that point); for the flow
z = f^-1(T u), u ~ N(0, I). T = 1 draws the prior itself.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.config import PRIORS
from tfvae.models import flows, gaussian, posteriors

tfd = tfp.distributions


class StandardNormal(keras.layers.Layer):
    """p(z) = N(0, I) over [latent_dim], float32; a draw at temperature T is T eps."""

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.latent_dim = latent_dim
        self.built = True  # no weights

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        normal = tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim], tf.float32))
        return normal.log_prob(tf.cast(z, tf.float32))

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: T eps, eps ~ N(0, I) (Philox from seed int [2], or stateful);
        T a number or float32 [Z], one per latent."""
        eps = posteriors.standard_noise([n, self.latent_dim], seed)
        return tf.cast(temperature, tf.float32) * eps

    def call(self, z):
        return self.log_prob(z)


def standard_normal(latent_dim: int) -> StandardNormal:
    """N(0, I) over [latent_dim], float32."""
    return StandardNormal(latent_dim)


class DistributionPrior:
    """Any TFP distribution over [Z] as a prior (the VAE contract's `prior=`): its log_prob, and
    draws at temperature T moved towards its mean, mean + T (z - mean)."""

    def __init__(self, distribution):
        self.distribution = distribution
        self.latent_dim = int(distribution.event_shape[-1])
        self.trainable_variables = list(distribution.trainable_variables)

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        return tf.cast(self.distribution.log_prob(z), tf.float32)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z] (seed int [2] stateless, or None)."""
        z = tf.cast(self.distribution.sample(n, seed=seed), tf.float32)
        mean = tf.cast(self.distribution.mean(), tf.float32)
        return mean + tf.cast(temperature, tf.float32) * (z - mean)


def as_prior(prior, latent_dim: int):
    """A VAE's prior with the interface: N(0, I) over [latent_dim] for None, a TFP distribution
    wrapped in `DistributionPrior`, or the prior layer as it is."""
    if prior is None:
        return StandardNormal(latent_dim)
    if isinstance(prior, tfd.Distribution):
        return DistributionPrior(prior)
    return prior


def mixture_draws(logits, n, dims: int, seed):
    """The random half of n draws of a mixture from seed int [2] (stateless Philox): components
    c ~ softmax(logits) (int32 [n]) and standard-normal noise eps (float32 [n, Z])."""
    pick_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    )
    component = tf.random.stateless_categorical(logits[None], n, pick_seed, dtype=tf.int32)[0]
    return component, tf.random.stateless_normal([n, dims], noise_seed, alg="philox")


class MixtureOfGaussians(keras.layers.Layer):
    """p(z) = sum_c w_c N(z; m_c, diag(s_c^2)), every parameter learned (float32 always).

    Initialised with equal weights, unit scales and means drawn from N(0, I) (the global Keras
    seed), so it starts close to N(0, I) widened a little.
    """

    def __init__(self, latent_dim: int, components: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.latent_dim, self.components = latent_dim, components
        self.logits = self.add_weight(shape=(components,), initializer="zeros", name="logits")
        self.means = self.add_weight(
            shape=(components, latent_dim), initializer=keras.initializers.RandomNormal(0, 1),
            name="means",
        )  # fmt: skip
        self.log_scales = self.add_weight(
            shape=(components, latent_dim), initializer="zeros", name="log_scales"
        )
        self.built = True  # every weight exists already

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        z = tf.cast(z, tf.float32)[..., None, :]  # [..., 1, Z]
        per_component = gaussian.diagonal_log_prob(z, self.means, self.log_scales)  # [..., C]
        return tf.reduce_logsumexp(tf.nn.log_softmax(self.logits) + per_component, -1)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: a component c ~ softmax(logits), then m_c + T s_c eps."""
        component, eps = mixture_draws(self.logits, n, self.latent_dim, _seed_or_random(seed))
        scales = tf.gather(tf.exp(self.log_scales), component)
        return tf.gather(self.means, component) + tf.cast(temperature, tf.float32) * scales * eps

    def call(self, z):
        return self.log_prob(z)


def _seed_or_random(seed):
    if seed is None:
        return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    return tf.cast(seed, tf.int64)


class VampPrior(keras.layers.Layer):
    """p(z) = (1/C) sum_c q(z|u_c): C learned pseudo-images u_c = sigmoid(w_c) [H, W, 3] in
    [0, 1], each encoded by `encoder` with training=False (moving batch-norm statistics).

    The encoder is the VAE's own, held without being tracked a second time (its weights belong
    to the VAE). w_c starts from N(0, 1), so the pseudo-images start as mid-grey noise.
    """

    def __init__(self, encoder, components: int, image_size: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.components, self.latent_dim = components, encoder.latent_dim
        call = encoder.__call__  # a bound method: Keras and checkpoints do not track it
        self._encode = lambda x, training: posteriors.as_posterior(call(x, training=training))
        self.pseudo_input_logits = self.add_weight(
            shape=(components, image_size, image_size, 3),
            initializer=keras.initializers.RandomNormal(0, 1), name="pseudo_input_logits",
        )  # fmt: skip
        self.built = True

    def pseudo_inputs(self):
        """The pseudo-images u_c, float32 [C, H, W, 3] in [0, 1]."""
        return tf.sigmoid(self.pseudo_input_logits)

    def components_of(self):
        """q(z|u_c) with batch [C], a `posteriors.Posterior` (a Gaussian, or an IAF)."""
        return self._encode(self.pseudo_inputs(), training=False)

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z] (exact for an IAF
        posterior too: it inverts the flow)."""
        q = self.components_of()
        z = tf.cast(z, tf.float32)[..., None, :]  # [..., 1, Z]
        shape = tf.concat([tf.shape(z)[:-2], [self.components, self.latent_dim]], 0)
        per_component = q.log_prob(tf.broadcast_to(z, shape))  # [..., C]
        return tf.reduce_logsumexp(per_component, -1) - np.log(self.components)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: c uniform over the pseudo-inputs, then q(z|u_c)'s draw from the noise
        T eps (z = m_c + T s_c eps; for an IAF posterior its flow of that point)."""
        component, eps = mixture_draws(
            tf.zeros([self.components]), n, self.latent_dim, _seed_or_random(seed)
        )
        q = self._encode(tf.gather(self.pseudo_inputs(), component), training=False)  # batch [n]
        return q.draw(tf.cast(temperature, tf.float32) * eps[None])[0][0]

    def call(self, z):
        return self.log_prob(z)


class FlowPrior(keras.layers.Layer):
    """p(z) = N(f(z); 0, I) |det df/dz|, f a MAF of `layers` MADEs of `width` units."""

    def __init__(self, latent_dim: int, layers: int, width: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.latent_dim = latent_dim
        self.flow = flows.MaskedAutoregressiveFlow(latent_dim, layers, width)
        self.built = True

    def log_prob(self, z):
        """log p(z), float32 [...] in nats, for z float32 [..., Z]."""
        return self.flow.log_prob(z)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: z = f^-1(T u), u ~ N(0, I) (Z passes of each MADE)."""
        u = tf.random.stateless_normal([n, self.latent_dim], _seed_or_random(seed), alg="philox")
        return self.flow.from_noise(tf.cast(temperature, tf.float32) * u)

    def call(self, z):
        return self.log_prob(z)


def build(config, encoder=None):
    """The prior of a Config (`--prior`, `--prior_components`, `--flow_layers`, `--flow_width`);
    the VampPrior encodes its pseudo-inputs with `encoder` (the VAE's)."""
    if config.prior == "normal":
        return standard_normal(config.latent_dim)
    if config.prior == "mog":
        return MixtureOfGaussians(config.latent_dim, config.prior_components)
    if config.prior == "vamp":
        return VampPrior(encoder, config.prior_components, config.image_size)
    if config.prior == "flow":
        return FlowPrior(config.latent_dim, config.flow_layers, config.flow_width)
    raise ValueError(f"Flag `--prior` is {config.prior!r}; accepted: {', '.join(PRIORS)}.")


def describe(config) -> str:
    """The prior of a Config in words (export metadata, docs)."""
    if getattr(config, "architecture", "dcgan") == "hierarchical":
        return ("top-down: each group's diagonal Gaussian given the groups above, "
                "N(mu_p, sigma_p^2), drawn from N(0, I) noise")  # fmt: skip
    return {
        "normal": "standard normal N(0, I) over [latent_dim]",
        "mog": f"learned mixture of {config.prior_components} diagonal Gaussians over [latent_dim]",
        "vamp": f"VampPrior: the mean of q(z|u_c) over {config.prior_components} learned "
        "pseudo-images u_c",
        "flow": f"masked autoregressive flow ({config.flow_layers} MADEs of {config.flow_width} "
        "units) on N(0, I) over [latent_dim]",
    }[config.prior]
