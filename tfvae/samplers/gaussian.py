"""The aggregate posterior's moment-matched Gaussian: the first sampler fitted to latent codes.

The aggregate posterior q(z) = mean_n q(z|x_n) is where the decoder was trained; when it sits far
from the prior N(0, I), prior samples are not faces while draws from N(m, S) fitted to q(z) are.
Also: decoding with batch statistics instead of the moving ones, a diagnostic of the same gap.
"""

from __future__ import annotations

import numpy as np


def aggregate_posterior(means, scales) -> dict:
    """The aggregate posterior q(z) = mean_n q(z|x_n) of diagonal Gaussians, against N(0, I).

    Args:
      means, scales: float [N, Z], the mean and standard deviation of each q(z|x_n).

    Returns:
      Its moment-matched Gaussian N(m, S), S = Cov_n(means) + diag(mean_n scales^2), and:
      KL(N(m, S) || N(0, I)) in nats, a lower bound on KL(q(z) || N(0, I)) (a Gaussian has the
      most entropy for given moments) and 0 iff the moments are the prior's; the same with S's
      diagonal only; the per-dimension variance of the means and mean posterior variance (both
      [Z]); the eigenvalues of S, largest first ([Z]; the prior's are all 1).
    """
    means, scales = np.asarray(means, np.float64), np.asarray(scales, np.float64)
    mean = means.mean(0)
    between, within = np.cov(means, rowvar=False), (scales**2).mean(0)
    covariance = between + np.diag(within)
    variance = np.diag(covariance)
    _, log_det = np.linalg.slogdet(covariance)
    dims = len(mean)
    return {
        "kl_moment_matched_nats": 0.5 * float(np.trace(covariance) + mean @ mean - dims - log_det),
        "kl_moment_matched_diagonal_nats": 0.5
        * float(np.sum(variance + mean**2 - 1.0 - np.log(variance))),
        "variance_of_means": np.diag(between),
        "mean_posterior_variance": within,
        "covariance_eigenvalues": np.linalg.eigvalsh(covariance)[::-1],
        "mean": mean,
        "covariance": covariance,
    }


REPORTED = (  # the entries of aggregate_posterior written to metrics.json
    "kl_moment_matched_nats",
    "kl_moment_matched_diagonal_nats",
    "variance_of_means",
    "mean_posterior_variance",
    "covariance_eigenvalues",
)


def decode_with_batch_statistics(vae, z, batch_size: int) -> np.ndarray:
    """Images decoded with batch norm in training mode (statistics of each batch of z).

    The moving statistics are restored afterwards, so the model is left as it was.

    Args:
      z: float32 [N, Z]; batch_size: codes per batch (the statistics are over each batch).

    Returns:
      float32 [N, H, W, 3] in [0, 1], point estimates of p(x|z).
    """
    from tfvae.models import likelihoods

    saved = [(v, v.numpy()) for v in vae.decoder.non_trainable_variables]
    try:
        return np.concatenate(
            [
                likelihoods.point_estimate(vae.decode(z[i : i + batch_size], training=True))
                for i in range(0, len(z), batch_size)
            ]
        )
    finally:
        for variable, value in saved:
            variable.assign(value)


# ---------------------------------------------------------------------------- the evaluation
