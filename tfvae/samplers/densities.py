"""The densities a sampler draws codes from: a Gaussian, a Gaussian mixture (in every direction,
or along the codes' top principal directions with a Gaussian along the rest), a flow.

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

from tfvae.models import gaussian as gaussian_density
from tfvae.models import priors


def _gaussian_log_prob(z, means, cholesky):
    """log N(z; means[c], L_c L_c^T) for each component c: float32 [N, C]."""
    diff = tf.transpose(z[None] - means[:, None], [0, 2, 1])  # [C, Z, N]: one solve per c
    solved = tf.linalg.triangular_solve(cholesky, diff)  # [C, Z, N]
    log_det = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(cholesky)), -1)  # [C]
    dims = float(means.shape[-1])
    quadratic = tf.transpose(tf.reduce_sum(tf.square(solved), 1))  # [N, C]
    return -0.5 * quadratic - log_det - 0.5 * dims * gaussian_density.LOG_2PI


class GaussianMixture(tf.Module):
    """sum_c w_c N(m_c, S_c) with full covariances; one component is a Gaussian N(m, S).

    With a `basis`, the mixture lives along the codes' top P principal directions and a Gaussian
    along the rest: y = V^T (z - center) has the mixture on y[:P] and independent N(0, r_j) on
    y[P:], so p(z) = mixture(y[:P]) prod_j N(y_j; 0, r_j) (V is orthogonal: no Jacobian). As a
    mixture in Z dimensions its component c has mean center + V_P m_c and covariance
    V_P S_c V_P^T + V_R diag(r) V_R^T; one component is the codes' Gaussian again.

    Args:
      weights: [C] summing to 1; means: [C, P]; covariances: [C, P, P] symmetric positive
      definite (all float, numpy); P = Z without a basis.
      basis: None, or [Z, Z] orthonormal columns, the mixture's P directions first.
      center: [Z], the origin of the directions (with a basis).
      residual_variances: [Z - P], the variance along each of the other directions, > 0.
    """

    def __init__(
        self, weights, means, covariances, kind: str = "gmm", basis=None, center=None,
        residual_variances=None,
    ):  # fmt: skip
        super().__init__(name=kind)
        self.kind = kind
        weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        self.log_weights = tf.constant(np.log(weights / weights.sum()), tf.float32)
        self.means = tf.constant(means, tf.float32)
        self.cholesky = tf.constant(np.linalg.cholesky(covariances), tf.float32)
        self.covariances = covariances
        self.basis = self.center = self.residual_scales = None
        if basis is not None:
            basis = np.asarray(basis, np.float64)
            residual_variances = np.asarray(residual_variances, np.float64)
            if basis.shape != (len(basis), len(basis)) or len(residual_variances) != len(
                basis) - means.shape[-1]:  # fmt: skip
                raise ValueError(
                    f"A mixture of {means.shape[-1]} directions needs a square basis and the "
                    f"variances of the others; got basis {basis.shape} and "
                    f"{len(residual_variances)} variances."
                )
            self.basis = tf.constant(basis, tf.float32)
            self.center = tf.constant(np.asarray(center, np.float64), tf.float32)
            self.residual_scales = tf.constant(np.sqrt(residual_variances), tf.float32)

    @property
    def dims(self) -> int:
        return int((self.means if self.basis is None else self.basis).shape[-1])

    @property
    def principal_dims(self) -> int:
        """P: the directions the mixture covers (Z without a basis)."""
        return int(self.means.shape[-1])

    def log_prob(self, z):
        """log p(z), float32 [N] in nats, for z float32 [N, Z]."""
        z = tf.convert_to_tensor(z, tf.float32)
        residual = 0.0
        if self.basis is not None:
            coordinates = tf.matmul(z - self.center, self.basis)  # [N, Z]: y = V^T (z - center)
            z, rest = coordinates[:, : self.principal_dims], coordinates[:, self.principal_dims :]
            residual = gaussian_density.diagonal_log_prob(
                rest, 0.0, tf.math.log(self.residual_scales)
            )
        joint = self.log_weights[None] + _gaussian_log_prob(z, self.means, self.cholesky)
        return tf.reduce_logsumexp(joint, -1) + residual

    def sample(self, count, seed, temperature=1.0):
        """float32 [count, Z]: a component c ~ w, then m_c + T L_c eps (seed: int [2]; T a
        number or one per latent [Z]); with a basis the centre and the noise are mapped back
        from the directions first: center + V_P m_c + T V [L_c eps_P; sqrt(r) eps_R]."""
        components, eps = priors.mixture_draws(self.log_weights, count, self.dims, seed)
        # every component's L_c eps, [N, C, P], then each draw's own: C N P numbers where
        # gathering the factors would take N P P (10 GB for 250 codes of 3,200 latents)
        spread = tf.einsum("czy,ny->ncz", self.cholesky, eps[:, : self.principal_dims])
        noise = tf.gather(spread, components, batch_dims=1)
        centres = tf.gather(self.means, components)
        if self.basis is not None:
            rest = eps[:, self.principal_dims :] * self.residual_scales
            noise = tf.matmul(tf.concat([noise, rest], -1), self.basis, transpose_b=True)
            centres = self.center + tf.matmul(
                centres, self.basis[:, : self.principal_dims], transpose_b=True
            )
        return centres + noise * tf.cast(temperature, tf.float32)

    def arrays(self) -> dict:
        arrays = {
            "weights": np.exp(self.log_weights.numpy().astype(np.float64)),
            "means": self.means.numpy(),
            "covariances": self.covariances,
        }
        if self.basis is not None:
            arrays.update(
                basis=self.basis.numpy(),
                center=self.center.numpy(),
                residual_variances=np.square(self.residual_scales.numpy().astype(np.float64)),
            )
        return arrays


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
