"""The training state (model, optimizer, counters, checkpoint) and the compiled train/eval steps.

Each step is one `tf.function` around `strategy.run`; the Python loop over steps stays outside.
A replica's loss is its share of the global-batch mean (sum over its examples / global batch),
so the optimizer's cross-replica sum of gradients is the gradient of the global mean.

A density likelihood (likelihoods.is_density) is scored at dequantized pixels (v + u_k) / 256,
u_k ~ U[0, 1)^D fresh for each of the K samples and each step, drawn like the latent noise; the
encoder sees v / 255 as always (see evaluate.bounds for why this bounds the discrete NLL).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import data, likelihoods, model, objectives


def _terms_sums(terms: dict) -> dict:
    """Per-replica sums over examples of the bounds and their parts, float32 scalars (nats)."""
    log_w = objectives.log_weights_from_terms(terms)  # [K, B]
    bound = objectives.iwae_bound(log_w)  # [B]
    return {
        "bound": tf.reduce_sum(bound),
        "elbo": tf.reduce_sum(objectives.elbo(log_w)),
        "kl": tf.reduce_sum(tf.reduce_mean(terms["log_qz_x"] - terms["log_pz"], axis=0)),
        "reconstruction": tf.reduce_sum(tf.reduce_mean(terms["log_px_z"], axis=0)),
    }


class Steps:
    """Model, optimizer and counters of one run, created under `strategy`, and its steps.

    Attributes:
      model: tfvae.model.VAE.
      optimizer: Keras Adam (in a LossScaleOptimizer for mixed_float16).
      step, epoch, step_in_epoch: int64 counters; with the model and optimizer they are the
        whole state of a run (sampling seeds derive from (seed, step)), saved in `checkpoint`.
      train_step(images, seed): images uint8 [B, H, W, C] (distributed), seed int64 [2] ->
        dict of float32 scalars: loss, bound, elbo, kl, reconstruction per example (nats).
      eval_step(images, seed): the same sums over the batch plus "count", without updates.
    """

    def __init__(self, config, strategy: tf.distribute.Strategy, compute_dtype: str = "float32"):
        self.config = config
        self.strategy = strategy
        with strategy.scope():
            self.model = model.build(
                config, compute_dtype, synchronized_batch_norm=strategy.num_replicas_in_sync > 1
            )
            optimizer = keras.optimizers.Adam(
                config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2
            )
            if compute_dtype == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            # Built before tracing, so the traced step reads the live dynamic loss scale.
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
        )
        jit = config.jit_compile
        self._replica_train = tf.function(self._replica_train_step, jit_compile=jit)
        self._replica_eval = tf.function(self._replica_eval_step, jit_compile=jit)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step, reduce_retracing=True)

    def _terms(self, images, noise, uniform, training):
        """Log-weight terms [K, B] of uint8 images [B, H, W, C] given the step's noise.

        noise: float32 [K, B, Z] latent noise; uniform: float32 [K, B, H, W, C] in [0, 1) for a
        density likelihood, else None.
        """
        x = data.to_unit_interval(images)  # [B, H, W, C] float32 in [0, 1]
        if uniform is None:
            return self.model.log_weight_terms(x, self.config.k, training=training, noise=noise)
        q = self.model.encode(x, training=training)
        z = model.reparameterize(q, noise)  # [K, B, Z]
        return self.model.joint_terms(likelihoods.dequantize(x, uniform), q, z, training)

    def _uniform(self, shape, seed):
        """Dequantization noise [K, B, H, W, C] from the step's seed, or None (discrete)."""
        if not likelihoods.is_density(self.config.likelihood):
            return None
        size = self.config.image_size
        seed = tf.random.experimental.stateless_fold_in(seed, -1)  # a stream apart from z's
        return tf.random.stateless_uniform([*shape, size, size, 3], seed, alg="philox")

    def _replica_train_step(self, images, noise, uniform=None):
        config = self.config
        local_batch = tf.shape(images)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        offset = tf.cast(replica, tf.int32) * local_batch
        noise = noise[:, offset : offset + local_batch]  # this replica's rows of the global batch
        if uniform is not None:
            uniform = uniform[:, offset : offset + local_batch]
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            terms = self._terms(images, noise, uniform, training=True)
            sums = _terms_sums(terms)
            loss = -sums["bound"] / config.batch_size  # this replica's share of the mean
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return sums

    def _train_step(self, images, seed):
        # The noise of the whole global batch, drawn outside the replicas and outside XLA (whose
        # Philox differs from TF's kernels): a replica's loss depends on its examples only.
        config = self.config
        noise = tf.random.stateless_normal(
            [config.k, config.batch_size, config.latent_dim], seed, alg="philox"
        )  # [K, B, Z]
        uniform = self._uniform([config.k, config.batch_size], seed)  # [K, B, H, W, C] or None
        args = (images, noise) if uniform is None else (images, noise, uniform)
        sums = self.strategy.run(self._replica_train, args=args)
        means = {
            k: self.strategy.reduce("SUM", v, axis=None) / self.config.batch_size
            for k, v in sums.items()
        }
        return {"loss": -means["bound"], **means}

    def _replica_eval_step(self, images, seed):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))
        shape = [self.config.k, tf.shape(images)[0], self.config.latent_dim]
        noise = tf.random.stateless_normal(shape, seed, alg="philox")  # [K, B, Z]
        terms = self._terms(images, noise, self._uniform(shape[:2], seed), training=False)
        sums = _terms_sums(terms)
        sums["count"] = tf.cast(tf.shape(images)[0], tf.float32)
        return sums

    def _eval_step(self, images, seed):
        sums = self.strategy.run(self._replica_eval, args=(images, seed))
        return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}
