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


def ledoit_wolf_shrinkage(points) -> float:
    """The Ledoit-Wolf (2004) estimate of the shrinkage in [0, 1] that minimises the expected
    squared Frobenius error of (1 - s) C + s (tr C / Z) I for the empirical covariance C of
    points float [N, Z] (centred on their mean, C with 1/N): 0 when N >> Z and the points are
    correlated, near 1 when they are too few to tell their covariance from a scaled identity."""
    x = np.asarray(points, np.float64)
    x = x - x.mean(0)
    n, dims = x.shape
    squared_norms = np.einsum("ni,ni->n", x, x)  # ||x_n||^2
    mu = squared_norms.sum() / (n * dims)  # tr C / Z
    gram = x.T @ x / n  # C
    # ||C - mu I||^2 / Z, and the mean squared deviation of x_n x_n^T from C over N^2, / Z:
    delta = (np.sum(gram**2) - 2.0 * mu * np.trace(gram) + dims * mu**2) / dims
    beta = (np.sum(squared_norms**2) / n - np.sum(gram**2)) / (n * dims)
    return 0.0 if delta <= 0 else float(min(beta, delta) / delta)


def check_shrinkage(shrinkage, kind: str = "gaussian"):
    """The shrinkage `shrunk_aggregate_posterior` takes, from a flag's text or a value: "auto",
    or a float in [0, 1], nonzero only for `kind` "gaussian" (the one sampler that shrinks).

    Raises ValueError, one line naming the value, for anything else (nan, "abc", 1.5).
    """
    try:
        value = "auto" if shrinkage == "auto" else float(shrinkage)
    except (TypeError, ValueError):
        value = None
    if value is None or (value != "auto" and not 0.0 <= value <= 1.0):
        raise ValueError(
            f"Flag `--shrinkage` is {shrinkage!r}; accepted: a number in [0, 1] or 'auto'."
        )
    if value != 0 and kind != "gaussian":
        raise ValueError(
            f"Flag `--shrinkage` is {shrinkage!r} with --sampler={kind}; only the gaussian "
            "sampler shrinks its covariance: pass --sampler=gaussian or leave --shrinkage at 0."
        )
    return value


def shrunk_aggregate_posterior(means, scales, shrinkage) -> tuple[np.ndarray, np.ndarray, float]:
    """`aggregate_posterior`'s N(m, S) with the covariance of the means shrunk towards a scaled
    identity: S = (1 - s) Cov_n(means) + s (tr Cov_n(means) / Z) I + diag(mean_n scales^2).

    Args:
      means, scales: float [N, Z] of each q(z|x_n).
      shrinkage: s in [0, 1], or "auto" for `ledoit_wolf_shrinkage` of the means. 0 is the exact
        moments; where N is not much larger than Z those overfit (held-out codes score below the
        prior), and shrinking keeps the strong directions while damping the noise in the rest.

    Returns:
      (mean float64 [Z], covariance float64 [Z, Z], the shrinkage s used).
    """
    means, scales = np.asarray(means, np.float64), np.asarray(scales, np.float64)
    if len(means) < 2:
        raise ValueError(
            f"The gaussian sampler needs at least 2 training codes for a covariance; got "
            f"{len(means)} (--num_images)."
        )
    s = check_shrinkage(shrinkage)
    s = ledoit_wolf_shrinkage(means) if s == "auto" else s
    between = np.cov(means, rowvar=False).reshape(means.shape[1], means.shape[1])
    target = np.trace(between) / len(between) * np.eye(len(between))
    covariance = (1.0 - s) * between + s * target + np.diag((scales**2).mean(0))
    return means.mean(0), covariance, s


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
