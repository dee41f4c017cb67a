"""Variational bounds on log p(x) from importance log-weights. Pure functions, float32 nats.

`log_weights` is float [K, B]: log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x),
samples on the leading axis.
"""

from __future__ import annotations

import tensorflow as tf


def log_weights_from_terms(terms: dict) -> tf.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), float32 [K, B] nats, from the terms dict."""
    return terms["log_px_z"] + terms["log_pz"] - terms["log_qz_x"]


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """The K-sample importance-weighted bound, log (1/K) sum_k w_k, float32 [B] in nats.

    Computed as logsumexp over K minus log K (stable for any range of log-weights). For K = 1 it
    is the single-sample ELBO; its expectation does not decrease with K and tends to log p(x).
    """
    log_weights = tf.cast(log_weights, tf.float32)
    num_samples = tf.cast(tf.shape(log_weights)[0], tf.float32)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_samples)


def elbo(log_weights: tf.Tensor) -> tf.Tensor:
    """The ELBO estimated with the same K samples, mean_k log w_k, float32 [B] in nats."""
    return tf.reduce_mean(tf.cast(log_weights, tf.float32), axis=0)


def describe_training(config) -> str:
    """The objective a run was trained with, in words (for metrics.json and the logs)."""
    name = "ELBO" if config.k == 1 else f"IWAE-{config.k} bound"
    controls = []
    penalty = {
        "beta_tcvae": f"minus {config.tc_weight:g} - 1 times the total correlation (beta-TCVAE)",
        "factor_vae": f"minus {config.tc_weight:g} times the discriminator's total correlation "
        "(FactorVAE)",
        "dip_vae_i": f"minus DIP-VAE-I's covariance penalty (lambda_od {config.dip_weight:g})",
        "dip_vae_ii": f"minus DIP-VAE-II's covariance penalty (lambda_od {config.dip_weight:g})",
    }.get(config.objective)
    if penalty:
        controls.append(penalty)
    if config.kl_weight != 1 or config.kl_warmup_steps:
        warmup = config.kl_warmup_steps and f", warmed up over {config.kl_warmup_steps} steps"
        controls.append(f"KL weight {config.kl_weight:g}{warmup or ''}")
    if config.free_bits:
        controls.append(f"free bits {config.free_bits:g} nats per latent dimension")
    if config.clip_gradient_norm:
        controls.append(f"gradient norm clipped at {config.clip_gradient_norm:g}")
    if config.skip_gradient_norm:
        controls.append(f"updates skipped above gradient norm {config.skip_gradient_norm:g}")
    if config.ema_decay:
        controls.append(f"weights averaged with decay {config.ema_decay:g} (EMA, evaluated)")
    return name + (f" with {'; '.join(controls)}" if controls else "")
