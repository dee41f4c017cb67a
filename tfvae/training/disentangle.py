"""The disentangling training objectives: penalties on the codes of a batch, added to the bound.

Each is a training objective only (validation and evaluation estimate the model's own bounds),
for a model with one latent vector and a diagonal Gaussian q(z|x) = N(loc, diag(scale^2)):
- beta-TCVAE (Chen et al. 2018): the bound minus (beta - 1) TC, TC = KL(q(z) || prod_d q(z_d))
  the total correlation of the aggregate posterior, by their minibatch-stratified estimator;
- FactorVAE (Kim and Mnih 2018): the bound minus gamma TC, TC estimated by a discriminator between
  codes and codes whose dimensions are permuted across the batch (the density-ratio trick), the
  discriminator trained in the same step to tell them apart;
- DIP-VAE I and II (Kumar et al. 2018): the bound minus lambda_od sum_{i != j} C_ij^2 -
  lambda_d sum_i (C_ii - 1)^2, C the covariance of the encoder's means (I) or of q(z) (II).

The estimators use the whole global batch: under several replicas, each replica gathers the
others' posterior moments and codes (`all_gather`, `all_reduce`, both differentiable), so a step
computes the same on any replica layout. Codes, moments and penalties are float32, nats.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae.models.gaussian import LOG_2PI

# disentanglement_lib's FactorVAE discriminator (architectures.fc_discriminator) and optimizer.
DISCRIMINATOR_LAYERS = 6
DISCRIMINATOR_BETA_1, DISCRIMINATOR_BETA_2 = 0.5, 0.9
PROBABILITY_CLIP = 1e-6  # its clip of the discriminator's probabilities


def gather_batch(value: tf.Tensor, axis: int) -> tf.Tensor:
    """`value` of this replica's examples -> that of the global batch, concatenated along `axis`
    in replica order (the identity with one replica). Differentiable."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=axis)


def sum_batch(value: tf.Tensor) -> tf.Tensor:
    """The sum over replicas of `value` (the identity with one replica). Differentiable."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("SUM", value)


def pairwise_log_densities(z, loc, scale) -> tf.Tensor:
    """log N(z_i,d; loc_j,d, scale_j,d^2), float32 [M, N, Z] nats, of codes z [M, Z] under each of
    N diagonal Gaussians (loc, scale [N, Z])."""
    z, loc, scale = (tf.cast(t, tf.float32) for t in (z, loc, scale))
    standardized = (z[:, None, :] - loc[None]) / scale[None]
    return -0.5 * tf.square(standardized) - tf.math.log(scale)[None] - 0.5 * LOG_2PI


def log_stratified_weights(rows, batch_size, dataset_size: int) -> tf.Tensor:
    """log of Chen et al.'s minibatch-stratified importance weights, float32 [M, B].

    rows: int [M], each code's example in the batch of B (0..B-1) drawn from a set of
    dataset_size N >= B examples. With M' = B - 1: the code's own example weighs 1/N, the next
    one ((row + 1) mod B) (N - M') / (N M'), every other 1/M'; each row sums to 1. (Their code
    gives the last row's (N - M') / (N M') to the row before it; here each row has one.)
    """
    batch_size = tf.convert_to_tensor(batch_size, tf.int32)
    others = tf.cast(batch_size - 1, tf.float32)
    size = tf.maximum(float(dataset_size), others + 1.0)
    columns = tf.range(batch_size)[None]  # [1, B]
    rows = tf.cast(rows, tf.int32)[:, None]  # [M, 1]
    weights = tf.where(columns == rows, 1.0 / size, 1.0 / others)
    stratum = (size - others) / (size * others)
    weights = tf.where(columns == (rows + 1) % batch_size, stratum, weights)
    return tf.math.log(weights)


def total_correlation(z, rows, loc, scale, dataset_size: int) -> tf.Tensor:
    """Minibatch-stratified estimate of the total correlation at each code, float32 [M] nats.

    z: [M, Z] codes, z_m ~ q(z|x_rows[m]), rows int [M] (0..B-1); loc, scale: [B, Z], the
    posteriors of the batch's B >= 2 examples; dataset_size: the size N of the set the batch is
    drawn from. log q(z_m) = log sum_j w_mj q(z_m|x_j) and each log q(z_m,d) alike, w the
    stratified weights (Chen et al. 2018, `log_stratified_weights`); the estimate is
    log q(z_m) - sum_d log q(z_m,d), whose mean tends to KL(q(z) || prod_d q(z_d)).
    """
    log_q = pairwise_log_densities(z, loc, scale)  # [M, B, Z]
    log_w = log_stratified_weights(rows, tf.shape(loc)[0], dataset_size)  # [M, B]
    log_qz = tf.reduce_logsumexp(log_w + tf.reduce_sum(log_q, -1), axis=1)  # [M]
    log_marginals = tf.reduce_logsumexp(log_w[..., None] + log_q, axis=1)  # [M, Z]
    return log_qz - tf.reduce_sum(log_marginals, axis=-1)


def covariance_penalty(loc, scale, variant: str, weight: float) -> tf.Tensor:
    """DIP-VAE's penalty, a float32 scalar: lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i
    (C_ii - 1)^2 with lambda_od = weight and lambda_d = 10 weight (variant "i") or weight ("ii").

    loc, scale: float32 [B, Z], the posteriors of this replica's examples; C is the covariance of
    the means over the global batch (i), plus the mean of the diagonal covariances (ii).
    """
    loc, scale = tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
    count = sum_batch(tf.cast(tf.shape(loc)[0], tf.float32))
    mean = sum_batch(tf.reduce_sum(loc, 0)) / count  # [Z]
    second = sum_batch(tf.matmul(loc, loc, transpose_a=True)) / count  # [Z, Z]
    covariance = second - mean[:, None] * mean[None, :]
    if variant == "ii":
        covariance += tf.linalg.diag(sum_batch(tf.reduce_sum(tf.square(scale), 0)) / count)
    diagonal = tf.linalg.diag_part(covariance)
    off_diagonal = covariance - tf.linalg.diag(diagonal)
    diagonal_weight = 10.0 * weight if variant == "i" else weight
    return weight * tf.reduce_sum(tf.square(off_diagonal)) + diagonal_weight * tf.reduce_sum(
        tf.square(diagonal - 1.0)
    )


def permutation_indices(seed, shape) -> tf.Tensor:
    """int32 [K, B, Z] (shape): for each sample k and dimension d an independent permutation of
    the batch positions 0..B-1, from the stateless seed int [2]."""
    keys = tf.random.stateless_uniform(shape, seed, alg="philox")
    return tf.argsort(keys, axis=1, stable=True)


def permute_dimensions(z, indices) -> tf.Tensor:
    """z [K, N, Z] with each dimension's values shuffled across the batch: out[k, b, d] =
    z[k, indices[k, b, d], d] for indices int32 [K, B, Z] into N (FactorVAE's samples of
    prod_d q(z_d)); [K, B, Z]."""
    return tf.experimental.numpy.take_along_axis(z, indices, axis=1)


class Discriminator(keras.Model):
    """FactorVAE's discriminator: 6 dense layers of `units` with leaky ReLU (slope 0.2), then 2
    logits (a code of q(z), a code of prod_d q(z_d)), as disentanglement_lib's; float32."""

    def __init__(self, units: int = 1000, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.hidden = [
            keras.layers.Dense(units, dtype="float32", name=f"dense_{i}")
            for i in range(DISCRIMINATOR_LAYERS)
        ]
        self.logits = keras.layers.Dense(2, dtype="float32", name="logits")

    def call(self, z):
        """z float32 [N, Z] -> logits float32 [N, 2]."""
        h = tf.cast(z, tf.float32)
        for layer in self.hidden:
            h = tf.nn.leaky_relu(layer(h), alpha=0.2)
        return self.logits(h)


def density_ratio_terms(discriminator, z, z_permuted):
    """(tc [N], discriminator_loss [N]) float32 nats for codes z and permuted codes [N, Z].

    tc = logit_0(z) - logit_1(z), the discriminator's log-ratio q(z) / prod_d q(z_d) at each code
    (differentiable in z for the VAE); the loss is the cross-entropy of telling z (class 0) from
    z_permuted (class 1), -(log D_0(z) + log D_1(z_permuted)) / 2 with the probabilities clipped
    to [1e-6, 1 - 1e-6]. The step takes the VAE's gradients from tc and the discriminator's from
    the loss alone (as disentanglement_lib's two optimizers, each over its own variables).
    """
    logits = discriminator(z)
    tc = logits[:, 0] - logits[:, 1]
    real = tf.nn.softmax(logits)[:, 0]
    fake = tf.nn.softmax(discriminator(tf.stop_gradient(z_permuted)))[:, 1]
    real, fake = (
        tf.clip_by_value(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP) for p in (real, fake)
    )
    loss = -0.5 * (tf.math.log(real) + tf.math.log(fake))
    return tc, loss


def build_discriminator(config, latent_dim: int):
    """(Discriminator, its Adam) of --objective=factor_vae, built (variables created)."""
    discriminator = Discriminator(config.discriminator_units, name="discriminator")
    discriminator(tf.zeros([1, latent_dim]))
    optimizer = keras.optimizers.Adam(
        config.discriminator_learning_rate,
        beta_1=DISCRIMINATOR_BETA_1,
        beta_2=DISCRIMINATOR_BETA_2,
    )
    optimizer.build(discriminator.trainable_variables)
    return discriminator, optimizer


def penalty_terms(config, moments, noise, dataset_size, discriminator=None, permutation=None):
    """What --objective subtracts from each example's bound, and what it is made of.

    moments: {"loc", "scale"} float32 [B, Z] of this replica's posteriors; noise: float32
    [K, B, Z], the step's draws (z = loc + scale noise); dataset_size: the training set's size;
    discriminator and permutation (int32 [K, B, Z], this replica's rows of the global batch's
    `permutation_indices`): --objective=factor_vae's. Returns name -> float32 [B] nats:
    "penalty", and "total_correlation" (its estimate at the example's codes, mean over K),
    "covariance_penalty" (DIP-VAE's, the batch's value at every example) or
    "discriminator_loss" (FactorVAE's discriminator, mean over K). {} for --objective=vae.
    """
    objective = config.objective
    if objective == "vae":
        return {}
    loc, scale = tf.cast(moments["loc"], tf.float32), tf.cast(moments["scale"], tf.float32)
    if objective in ("dip_vae_i", "dip_vae_ii"):
        variant = objective.removeprefix("dip_vae_")
        penalty = covariance_penalty(loc, scale, variant, config.dip_weight)
        per_example = penalty * tf.ones(tf.shape(loc)[:1])
        return {"penalty": per_example, "covariance_penalty": per_example}
    z = loc[None] + scale[None] * tf.cast(noise, tf.float32)  # [K, B, Z]
    samples, batch, size = tf.shape(z)[0], tf.shape(z)[1], tf.shape(z)[2]
    flat = tf.reshape(z, [-1, size])  # [K B, Z]

    def per_example(values):  # [K B] -> [B], the mean over the K samples
        return tf.reduce_mean(tf.reshape(values, [samples, batch]), axis=0)

    if objective == "beta_tcvae":
        everyone = gather_batch(loc, 0), gather_batch(scale, 0)  # [N, Z] each
        context = tf.distribute.get_replica_context()
        first = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch if context else 0
        rows = tf.tile(first + tf.range(batch), [samples])  # [K B]: each code's global example
        tc = per_example(total_correlation(flat, rows, *everyone, dataset_size))
        return {"penalty": (config.tc_weight - 1.0) * tc, "total_correlation": tc}
    # factor_vae: this replica's rows of the global batch with each dimension permuted across it
    permuted = permute_dimensions(gather_batch(z, 1), permutation)  # [K, B, Z]
    tc, loss = density_ratio_terms(discriminator, flat, tf.reshape(permuted, [-1, size]))
    tc = per_example(tc)
    return {
        "penalty": config.tc_weight * tc,
        "total_correlation": tc,
        "discriminator_loss": per_example(loss),
    }
