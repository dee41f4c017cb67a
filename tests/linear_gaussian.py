"""A linear-Gaussian VAE whose log p(x) and posterior are exact (keeps the VAE contract).

z ~ N(0, I_Z); x = A z + b + e, e ~ N(0, s^2 I_D), x shaped [H, W, C]. Then
p(x) = N(b, A A^T + s^2 I) and p(z|x) = N(S A^T (x - b) / s^2, S), S = (I + A^T A / s^2)^-1.
With a learned Gaussian prior N(m, P) (P diagonal; the package's one-component `mog` prior):
p(x) = N(A m + b, A P A^T + s^2 I) and p(z|x) = N(S (P^-1 m + A^T (x - b) / s^2), S),
S = (P^-1 + A^T A / s^2)^-1.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models import flows, posteriors
from tfvae.models.priors import MixtureOfGaussians
from tfvae.models.vae import VAE

tfd = tfp.distributions


class LinearGaussianDecoder(keras.layers.Layer):
    def __init__(self, A, b, noise_std, image_shape):
        super().__init__()
        self.A, self.b, self.noise_std, self.image_shape = A, b, noise_std, image_shape

    def call(self, z, training=False):
        loc = tf.matmul(z, self.A, transpose_b=True) + self.b  # [N, D]
        loc = tf.reshape(loc, [-1, *self.image_shape])
        return tfd.Independent(tfd.Normal(loc, self.noise_std), reinterpreted_batch_ndims=3)


class PosteriorEncoder(keras.layers.Layer):
    """The exact posterior, optionally degraded: mean shifted, std scaled, or pushed through an
    inverse autoregressive flow with random MADEs conditioned on x (`iaf`)."""

    def __init__(self, A, b, noise_std, mean_shift=0.0, std_scale=1.0, prior_mean=None,
                 prior_var=None, iaf=False):  # fmt: skip
        super().__init__()
        self.iaf = None
        if iaf:
            dims = A.shape[0]
            self.iaf = flows.InverseAutoregressiveFlow(A.shape[1], 2, 16, context_dim=dims)
            rng = np.random.default_rng(11)
            for made in self.iaf.mades:
                made.out.kernel.assign(rng.normal(0, 0.1, made.out.kernel.shape).astype("float32"))
        self.latent_dim = A.shape[1]
        prior_var = np.ones(self.latent_dim) if prior_var is None else prior_var
        self.prior_mean = np.zeros(self.latent_dim) if prior_mean is None else prior_mean
        precision = np.diag(1 / prior_var) + A.T @ A / noise_std**2
        self.cov = np.linalg.inv(precision)
        self.prior_term = self.cov @ (self.prior_mean / prior_var)
        self.A, self.b, self.noise_std = A, b, noise_std
        self.mean_shift, self.std_scale = mean_shift, std_scale

    def call(self, x, training=False):
        flat = tf.reshape(tf.cast(x, tf.float64), [tf.shape(x)[0], -1]) - self.b
        mean = tf.matmul(flat, self.A @ self.cov.T) / self.noise_std**2 + self.mean_shift
        mean += self.prior_term
        chol = np.linalg.cholesky(self.cov) * self.std_scale
        q = tfd.MultivariateNormalTriL(tf.cast(mean, tf.float32), tf.constant(chol, tf.float32))
        if self.iaf is None:
            return q
        context = tf.cast(flat, tf.float32)  # [B, D]
        return posteriors.InverseAutoregressivePosterior(q, context, self.iaf)


def make(mean_shift=0.0, std_scale=1.0, seed=0, image_shape=(2, 2, 1), latent_dim=2,
         learned_prior=False, iaf=False):  # fmt: skip
    rng = np.random.default_rng(seed)
    dims = int(np.prod(image_shape))
    A = rng.normal(size=(dims, latent_dim))
    b = rng.normal(size=dims)
    noise_std = 0.5
    decoder = LinearGaussianDecoder(
        A.astype(np.float32), b.astype(np.float32), noise_std, image_shape
    )
    prior, prior_mean, prior_var = None, np.zeros(latent_dim), np.ones(latent_dim)
    if learned_prior:  # N(m, P) as the one-component mixture prior, its weights set by hand
        prior_mean, prior_var = rng.normal(size=latent_dim), rng.uniform(0.3, 3.0, latent_dim)
        prior = MixtureOfGaussians(latent_dim, 1)
        prior.means.assign(prior_mean[None].astype(np.float32))
        prior.log_scales.assign(0.5 * np.log(prior_var)[None].astype(np.float32))
    encoder = PosteriorEncoder(
        A, b, noise_std, mean_shift, std_scale, prior_mean, prior_var, iaf
    )  # fmt: skip
    covariance = A @ np.diag(prior_var) @ A.T + noise_std**2 * np.eye(dims)
    marginal = tfd.MultivariateNormalFullCovariance(A @ prior_mean + b, covariance)

    def exact_log_px(x):
        return marginal.log_prob(tf.reshape(tf.cast(x, tf.float64), [x.shape[0], -1])).numpy()

    vae = VAE(encoder, decoder, prior)
    data = marginal.sample(6, seed=[seed, 7]).numpy().reshape(6, *image_shape).astype(np.float32)
    return vae, data, exact_log_px
