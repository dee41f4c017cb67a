"""Priors p(z) of the VAE: N(0, I) (the default) and a learned mixture of Gaussians (`mog`).

A prior is part of the model: its weights train with the encoder and decoder, so log p(x), the
IWAE bound and bits/dim stay estimates of the model they describe. Each prior has `log_prob(z)`
(float32 [...] nats for z float32 [..., Z]) and is drawn from by `sample(prior, n, seed, T)`.
Temperature T scales the noise about each component's mean: N(0, T^2 I) for the standard normal;
for the mixture a component is picked as at T = 1 and z = m_c + T s_c eps.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.config import PRIORS

tfd = tfp.distributions

_LOG_2PI = float(np.log(2 * np.pi))


def standard_normal(latent_dim: int) -> tfd.Distribution:
    """N(0, I) over [latent_dim], float32."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], tf.float32))


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
        scales = tf.exp(self.log_scales)
        standardized = (z - self.means) / scales  # [..., C, Z]
        per_component = -0.5 * tf.reduce_sum(tf.square(standardized), -1) - tf.reduce_sum(
            self.log_scales, -1
        )
        per_component -= 0.5 * self.latent_dim * _LOG_2PI
        return tf.reduce_logsumexp(tf.nn.log_softmax(self.logits) + per_component, -1)

    def sample(self, n, seed=None, temperature=1.0):
        """float32 [n, Z]: a component c ~ softmax(logits), then m_c + T s_c eps."""
        if seed is None:
            seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
        component, eps = mixture_draws(self.logits, n, self.latent_dim, seed)
        scales = tf.gather(tf.exp(self.log_scales), component)
        return tf.gather(self.means, component) + tf.cast(temperature, tf.float32) * scales * eps

    def call(self, z):
        return self.log_prob(z)


def build(config):
    """The prior of a Config (`--prior`, `--prior_components`)."""
    if config.prior == "normal":
        return standard_normal(config.latent_dim)
    if config.prior == "mog":
        return MixtureOfGaussians(config.latent_dim, config.prior_components)
    raise ValueError(f"Flag `--prior` is {config.prior!r}; accepted: {', '.join(PRIORS)}.")


def sample(prior, n, seed=None, temperature=1.0):
    """n draws of a prior at temperature T, float32 [n, Z] (seed: int [2] stateless, or None)."""
    if isinstance(prior, MixtureOfGaussians):
        return prior.sample(n, seed, temperature)
    return tf.cast(temperature, tf.float32) * prior.sample(n, seed=seed)
