"""A two-level linear-Gaussian hierarchy run through HierarchicalVAE's own top-down pass.

Groups: z1 (1x1, one channel), then z2 (2x2, one channel), image x [8, 8, 3]:
  z1 ~ N(a1, s1^2);  z2_p | z1 ~ N(alpha z1 + beta, s2^2) for each position p;
  x[u, v, c] = w1_c z1 + w2_c z2_parent(u, v) + d[u, v, c] + N(0, sigma^2),
the parent (u // 4, v // 4) being the 2x2 position the nearest upsamplings copy to (u, v). So
(z, x) is jointly Gaussian, p(x) = N(C m + d, C S C^T + sigma^2 I), and given z1 and x the
positions of z2 are independent, so the exact posterior q(z1|x) q(z2|x, z1) lies in the model's
family (a diagonal Gaussian per group). Only the cells are replaced by linear ones: the noise
slicing, the draws z = loc + scale eps, the groups' log-densities, the upsampling, the tiling
over K, the pixel likelihood and the estimates are the package's.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import config as config_lib
from tfvae.models import hierarchy

tfd = tfp.distributions

A1, S1, ALPHA, BETA, S2, SIGMA = 0.3, 1.2, 0.8, -0.2, 0.7, 0.4
W1 = np.array([0.9, -0.5, 0.4])
W2 = np.array([0.6, 0.8, -0.7])
D = 8 * 8 * 3


def _design(rng):
    """Offsets d [8, 8, 3], the prior mean m [5] and covariance S [5, 5] of z = (z1, z2), and
    C [192, 5] with x = C z + d + noise (x flattened as [u, v, c])."""
    d = rng.normal(0, 0.3, [8, 8, 3])
    m = np.array([A1] + [ALPHA * A1 + BETA] * 4)
    S = np.full([5, 5], ALPHA**2 * S1**2) + S2**2 * np.diag([0, 1, 1, 1, 1])
    S[0, :] = S[:, 0] = ALPHA * S1**2
    S[0, 0] = S1**2
    C = np.zeros([8, 8, 3, 5])
    for u in range(8):
        for v in range(8):
            C[u, v, :, 0] = W1
            C[u, v, :, 1 + (u // 4) * 2 + v // 4] = W2
    return d, m, S, C.reshape(D, 5)


class _Group:
    """prior_of / posterior_of / update of one linear group (the three calls the pass makes)."""

    def __init__(self, channel, prior, posterior):
        self.channel, self.prior, self.posterior = channel, prior, posterior

    def prior_of(self, h):
        loc, log_scale = self.prior(h)
        return loc, log_scale, tf.zeros_like(h)

    def posterior_of(self, h, features, prior_loc, prior_log_scale):
        return self.posterior(h, features)

    def update(self, h, prior_features, z):
        return h + z * tf.one_hot(self.channel, h.shape[-1])


class _BottomUp(tf.Module):
    """x [B, 8, 8, 3] -> {1: E[z1|x] [B, 1, 1, 1], 2: E[z2|x, z1 = 0] [B, 2, 2, 1]}."""

    def __init__(self, M, offset):
        super().__init__()
        self.M, self.offset = tf.constant(M, tf.float32), tf.constant(offset, tf.float32)

    def __call__(self, x):
        features = tf.matmul(tf.reshape(x, [-1, D]), self.M, transpose_b=True) + self.offset
        return {1: tf.reshape(features[:, :1], [-1, 1, 1, 1]),
                2: tf.reshape(features[:, 1:], [-1, 2, 2, 1])}  # fmt: skip


def make(mean_shift=0.0, std_scale=1.0, num_examples=6, seed=0):
    """(model, x float32 [N, 8, 8, 3], exact log p(x) float64 [N]); the posterior is exact
    unless its means are shifted by `mean_shift` of its stds and its stds scaled by
    `std_scale`."""
    rng = np.random.default_rng(seed)
    d, m, S, C = _design(rng)
    config = config_lib.Config(
        architecture="hierarchical", image_size=8, width=8, latent_groups="1:1,2:1",
        latent_channels=1, residual_cells=1, likelihood="gaussian", gaussian_scale=SIGMA,
    )  # fmt: skip
    model = hierarchy.HierarchicalVAE(config)
    # The exact posterior N(mu(x), Sigma) of z, factorised as q(z1|x) q(z2|x, z1).
    Sigma = np.linalg.inv(np.linalg.inv(S) + C.T @ C / SIGMA**2)
    M = Sigma @ C.T / SIGMA**2  # mu(x) = M (x - d) + Sigma S^-1 m
    mu0 = Sigma @ np.linalg.solve(S, m) - M @ d.reshape(D)
    slope = Sigma[1:, 0] / Sigma[0, 0]  # E[z2|x, z1] = mu2 + slope (z1 - mu1)
    conditional = Sigma[1:, 1:] - np.outer(slope, Sigma[0, 1:])
    assert np.allclose(conditional, np.diag(np.diag(conditional)), atol=1e-12)  # factorises
    features_map = np.concatenate([M[:1], M[1:] - np.outer(slope, M[0])])
    features_offset = np.concatenate([mu0[:1], mu0[1:] - slope * mu0[0]])
    model.encoder = _BottomUp(features_map, features_offset)
    sd1, sd2 = np.sqrt(Sigma[0, 0]), np.sqrt(np.diag(conditional)).reshape(1, 2, 2, 1)
    log_sd1, log_sd2 = np.log(sd1 * std_scale), np.log(sd2 * std_scale)
    shift1, shift2 = mean_shift * sd1, tf.constant(mean_shift * sd2, tf.float32)
    slope = tf.constant(slope.reshape(1, 2, 2, 1), tf.float32)

    def constant(value, like):
        return tf.zeros_like(like[..., :1]) + tf.cast(value, tf.float32)

    top_down = model.decoder
    top_down.blocks = {
        1: [_Group(0,
                   lambda h: (constant(A1, h), constant(np.log(S1), h)),
                   lambda h, f: (f + shift1, constant(log_sd1, h)))],
        2: [_Group(1,
                   lambda h: (ALPHA * h[..., :1] + BETA, constant(np.log(S2), h)),
                   lambda h, f: (f + slope * h[..., :1] + shift2, constant(log_sd2, h)))],
        4: [],
        8: [],
    }  # fmt: skip
    top_down.plain_cells = {1: [], 2: [], 4: [], 8: []}
    offsets = tf.constant(d, tf.float32)
    top_down.params_of = lambda h: h[..., :1] * W1 + h[..., 1:2] * W2 + offsets

    covariance = C @ S @ C.T + SIGMA**2 * np.eye(D)
    marginal = tfd.MultivariateNormalTriL(C @ m + d.reshape(D), np.linalg.cholesky(covariance))
    x = marginal.sample(num_examples, seed=seed).numpy()

    def exact_log_px(images):
        return marginal.log_prob(np.reshape(images, [-1, D]).astype(np.float64)).numpy()

    return model, x.reshape(-1, 8, 8, 3).astype(np.float32), exact_log_px
