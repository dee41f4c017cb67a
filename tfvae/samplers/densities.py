"""The densities a sampler draws codes from: a Gaussian, a Gaussian mixture, a flow.

Each keeps one contract: `sample(count, seed, temperature)` -> float32 [count, Z] with plain
stateless TF ops (so an export's `sample` runs with TensorFlow alone), `log_prob(z)` -> float32
[N] in nats, `arrays()` -> the numpy parameters it is saved as, and `variables` (what an export
tracks). Temperature T scales the noise around each density's own centre: the Gaussian draws
m + T L eps, the mixture picks a component as at T = 1 and draws m_c + T L_c eps, the flow pushes
T u, u ~ N(0, I), through its inverse.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvae.models import priors

_LOG_2PI = float(np.log(2 * np.pi))


def _gaussian_log_prob(z, means, cholesky):
    """log N(z; means[c], L_c L_c^T) for each component c: float32 [N, C]."""
    diff = tf.transpose(z[None] - means[:, None], [0, 2, 1])  # [C, Z, N]: one solve per c
    solved = tf.linalg.triangular_solve(cholesky, diff)  # [C, Z, N]
    log_det = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(cholesky)), -1)  # [C]
    dims = float(means.shape[-1])
    quadratic = tf.transpose(tf.reduce_sum(tf.square(solved), 1))  # [N, C]
    return -0.5 * quadratic - log_det - 0.5 * dims * _LOG_2PI


class GaussianMixture(tf.Module):
    """sum_c w_c N(m_c, S_c) with full covariances; one component is a Gaussian N(m, S).

    Args:
      weights: [C] summing to 1; means: [C, Z]; covariances: [C, Z, Z] symmetric positive
      definite (all float, numpy).
    """

    def __init__(self, weights, means, covariances, kind: str = "gmm"):
        super().__init__(name=kind)
        self.kind = kind
        weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        self.log_weights = tf.constant(np.log(weights / weights.sum()), tf.float32)
        self.means = tf.constant(means, tf.float32)
        self.cholesky = tf.constant(np.linalg.cholesky(covariances), tf.float32)
        self.covariances = covariances

    @property
    def dims(self) -> int:
        return int(self.means.shape[-1])

    def log_prob(self, z):
        """log p(z), float32 [N] in nats, for z float32 [N, Z]."""
        z = tf.convert_to_tensor(z, tf.float32)
        joint = self.log_weights[None] + _gaussian_log_prob(z, self.means, self.cholesky)
        return tf.reduce_logsumexp(joint, -1)

    def sample(self, count, seed, temperature=1.0):
        """float32 [count, Z]: a component c ~ w, then m_c + T L_c eps (seed: int [2])."""
        components, eps = priors.mixture_draws(self.log_weights, count, self.dims, seed)
        # every component's L_c eps, [N, C, Z], then each draw's own: C N Z numbers where
        # gathering the factors would take N Z Z (10 GB for 250 codes of 3,200 latents)
        spread = tf.einsum("czy,ny->ncz", self.cholesky, eps)
        noise = tf.gather(spread, components, batch_dims=1) * tf.cast(temperature, tf.float32)
        return tf.gather(self.means, components) + noise

    def arrays(self) -> dict:
        return {
            "weights": np.exp(self.log_weights.numpy().astype(np.float64)),
            "means": self.means.numpy(),
            "covariances": self.covariances,
        }


def gaussian(mean, covariance) -> GaussianMixture:
    """N(m, S) as a one-component mixture (mean [Z], covariance [Z, Z])."""
    return GaussianMixture([1.0], np.asarray(mean)[None], np.asarray(covariance)[None], "gaussian")


class Flow(tf.Module):
    """A fitted `tfvae.models.flows.MaskedAutoregressiveFlow` under the sampler contract."""

    kind = "flow"

    def __init__(self, network):
        super().__init__(name="flow")
        self.network = network
        self.model_variables = [getattr(v, "value", v) for v in network.weights]

    @property
    def dims(self) -> int:
        return self.network.dims

    def log_prob(self, z):
        return self.network.log_prob(z)

    def sample(self, count, seed, temperature=1.0):
        """float32 [count, Z]: the inverse flow of T u, u ~ N(0, I) from seed int [2]."""
        u = tf.random.stateless_normal([count, self.dims], tf.cast(seed, tf.int64), alg="philox")
        return self.network.from_noise(u * tf.cast(temperature, tf.float32))

    def arrays(self) -> dict:
        return {f"weight_{i:03d}": v.numpy() for i, v in enumerate(self.network.weights)}


def flow_from_arrays(arrays, dims: int, layers: int, width: int) -> Flow:
    """A Flow with the weights `Flow.arrays` saved (its size as fitted)."""
    from tfvae.models.flows import MaskedAutoregressiveFlow

    weights = [arrays[k] for k in sorted(k for k in arrays if k.startswith("weight_"))]
    network = MaskedAutoregressiveFlow(dims, layers, width)
    for variable, value in zip(network.weights, weights, strict=True):
        variable.assign(value)
    return Flow(network)
