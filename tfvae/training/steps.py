"""The training state (model, optimizer, counters, checkpoint) and the compiled train/eval steps.

Each step is one `tf.function` around `strategy.run`; the Python loop over steps stays outside.
A replica's loss is its share of the global-batch mean (sum over its examples / global batch),
so the optimizer's cross-replica sum of gradients is the gradient of the global mean.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae import data
from tfvae.evaluation.noise import per_example_noise, per_sample_uniform
from tfvae.models import likelihoods, objectives
from tfvae.models import vae as model
from tfvae.training import disentangle

SUMS = ("bound", "elbo", "kl", "reconstruction")  # per-example terms summed by the steps
TRAIN_SUMS = (*SUMS, "objective")  # + what training maximises (the bound without controls)
EVAL_NAMES = (*SUMS, "count")  # what the eval step sums: the SUMS and the real examples
# What --objective adds to a train step's sums (disentangle.penalty_terms), reported per example
PENALTY_SUMS = ("total_correlation", "covariance_penalty", "discriminator_loss")


def pack(values: dict, names: tuple) -> tf.Tensor:
    """float32 [len(names)]: the float32 scalars values[name] in the order of `names`, one
    vector for a step's single all-reduce (`unpack` reads it back by the same names)."""
    return tf.stack([values[name] for name in names])


def unpack(vector: tf.Tensor, names: tuple) -> dict:
    """name -> float32 scalar of a `pack`ed vector [len(names)] (summed over replicas or not)."""
    return {name: vector[i] for i, name in enumerate(names)}


def kl_weight_at(config, step) -> tf.Tensor:
    """The KL weight of the step with index `step` (0-based): --kl_weight, reached linearly over
    --kl_warmup_steps steps (1/W at the first step). float32 scalar."""
    weight = tf.constant(config.kl_weight, tf.float32)
    if config.kl_warmup_steps > 0:
        ramp = (tf.cast(step, tf.float32) + 1.0) / float(config.kl_warmup_steps)
        weight *= tf.minimum(1.0, ramp)
    return weight


def training_objective(config, terms: dict, q, noise, kl_weight) -> tf.Tensor:
    """What a train step maximises, float32 [B] nats: the IWAE-k bound of the log-weights
    log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) (beta = kl_weight; the bound itself at 1),
    minus beta sum_d max(0, lambda - KL_d) with lambda = --free_bits: each latent dimension's KL
    of each example (estimated with its K samples) counts as at least lambda, as openai/iaf's
    kl_min (per example here rather than per batch, so a step does not depend on the replicas).
    """
    if config.kl_weight == 1 and not config.kl_warmup_steps:  # the bound, summed as evaluated
        log_w = objectives.log_weights_from_terms(terms)  # [K, B]
    else:
        log_w = terms["log_px_z"] + kl_weight * (terms["log_pz"] - terms["log_qz_x"])
    objective = objectives.iwae_bound(log_w)
    if config.free_bits > 0:
        # log q_d(z_d|x) - log p_d(z_d) of the diagonal q and the N(0, I) prior, per dimension:
        # -eps^2 / 2 - log s_d + z_d^2 / 2 with z = m + s eps.
        moments = q.moments()
        scale = tf.cast(moments["scale"], tf.float32)  # [B, Z]
        z = tf.cast(moments["loc"], tf.float32) + scale * noise  # [K, B, Z]
        per_dimension = tf.reduce_mean(
            -0.5 * tf.square(noise) - tf.math.log(scale) + 0.5 * tf.square(z), axis=0
        )  # [B, Z]
        shortfall = tf.nn.relu(config.free_bits - per_dimension)
        objective -= kl_weight * tf.reduce_sum(shortfall, axis=-1)
    return objective


def _terms_sums(terms: dict, weight=None) -> dict:
    """Per-replica sums over examples of the bounds and their parts, float32 scalars (nats).

    weight: optional float32 [B] of 1 (a real example) or 0 (padding, left out of the sums).
    """
    log_w = objectives.log_weights_from_terms(terms)  # [K, B]
    per_example = {
        "bound": objectives.iwae_bound(log_w),
        "elbo": objectives.elbo(log_w),
        "kl": tf.reduce_mean(terms["log_qz_x"] - terms["log_pz"], axis=0),
        "reconstruction": tf.reduce_mean(terms["log_px_z"], axis=0),
    }  # each [B]
    if weight is not None:  # padding never reaches a sum, even where its terms are not finite
        per_example = {k: tf.where(weight > 0, v, 0.0) for k, v in per_example.items()}
    return {k: tf.reduce_sum(v) for k, v in per_example.items()}


class ExponentialMovingAverage:
    """A copy of the VAE whose variables follow e <- d_t e + (1 - d_t) w after the update of
    step t, d_t = min(--ema_decay, (1 + t) / (10 + t)) (tf.train.ExponentialMovingAverage's
    num_updates ramp, so the initial weights fade within the first steps instead of weighing
    d^t). Batch-norm statistics are averaged with the weights, so the average normalises with
    statistics of its own window. Saved in the checkpoint as `ema_model`, which
    `tfvae.models.vae.restore` loads in place of the trained weights."""

    def __init__(self, config, vae, compute_dtype: str = "float32"):
        self.decay = config.ema_decay
        self.model = model.build(config, compute_dtype)
        for shadow, live in zip(self.model.variables, vae.variables, strict=True):
            shadow.assign(live)

    def decay_at(self, step):
        """d_t of step t (int), float32."""
        t = tf.cast(step, tf.float32)
        return tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + t) / (10.0 + t))

    def update(self, vae, step, updated=True) -> None:
        """The average after the update of step t (none after a skipped one); cross-replica
        context: every copy gets the same value."""
        decay = self.decay_at(step)
        for shadow, live in zip(self.model.variables, vae.variables, strict=True):
            d = tf.cast(decay, shadow.dtype)
            average = d * shadow + (1 - d) * tf.cast(live, shadow.dtype)
            shadow.assign(tf.where(updated, average, shadow))


def learning_rate_schedule(config, total_steps: int = 0):
    """Adam's learning rate: a float, or a Keras schedule of the optimizer's step count.

    cosine decays from `config.learning_rate` to 0 over `total_steps` (the run's epochs times its
    steps per epoch) and stays at 0 after them. Raises ValueError when cosine has no length.
    """
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    if total_steps < 1:
        raise ValueError(
            f"Flag `--learning_rate_schedule={config.learning_rate_schedule}` needs the run's "
            f"length in steps; got {total_steps}. Accepted: a run of at least one step."
        )
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps, alpha=0.0)


def learning_rate_at(learning_rate, step: int) -> float:
    """The value (a Python float) of a `learning_rate_schedule` result at optimizer step `step`."""
    if callable(learning_rate):
        return float(learning_rate(step))
    return float(learning_rate)


class Steps:
    """Model, optimizer and counters of one run, created under `strategy`, and its steps.

    Attributes:
      model: tfvae.models.vae.VAE.
      optimizer: Keras Adam (in a LossScaleOptimizer for mixed_float16).
      step, epoch, step_in_epoch: int64 counters; with the model and optimizer they are the
        whole state of a run (sampling seeds derive from (seed, step)), saved in `checkpoint`.
      train_step(images, seed, stop=None): images uint8 [B, H, W, C] (distributed), seed int64
        [2], stop float32 scalar (> 0: this worker asks to stop) -> dict of float32 scalars:
        loss, bound, elbo, kl, reconstruction per example (nats), and "stop", the sum of the
        requests of all replicas (> 0 on every worker at the same step: stop there).
      eval_step(batch, seed): batch {"image": uint8 [B, H, W, C], "index": int64 [B] (the
        example's position in the split), "weight": float32 [B] (0 for padding)} (distributed)
        -> the sums over real examples of bound, elbo, kl, reconstruction (nats) and "count".
      discriminator, discriminator_optimizer: --objective=factor_vae's (else None), in the
        checkpoint with the model.
    """

    def __init__(
        self,
        config,
        strategy: tf.distribute.Strategy,
        compute_dtype: str = "float32",
        total_steps: int = 0,
        dataset_size: int = 0,
    ):
        replicas = strategy.num_replicas_in_sync
        if config.jit_compile and replicas > 1:
            raise ValueError(
                f"Flag `--jit_compile` is refused with {replicas} replicas: XLA cannot compile "
                "the all-reduce of the synchronized batch norm inside a step; accepted: one "
                "replica (--strategy=default) or --nojit_compile."
            )
        self.config = config
        self.strategy = strategy
        self.dataset_size = dataset_size or config.batch_size  # beta-TCVAE's N
        self.discriminator = self.discriminator_optimizer = None
        with strategy.scope():
            self.model = model.build(
                config, compute_dtype, synchronized_batch_norm=strategy.num_replicas_in_sync > 1
            )
            self.learning_rate = learning_rate_schedule(config, total_steps)
            optimizer = keras.optimizers.Adam(
                self.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2
            )
            if compute_dtype == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            # Built before tracing, so the traced step reads the live dynamic loss scale.
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            self.ema = (
                ExponentialMovingAverage(config, self.model, compute_dtype)
                if config.ema_decay
                else None
            )
            if config.objective == "factor_vae":
                self.discriminator, self.discriminator_optimizer = disentangle.build_discriminator(
                    config, self.model.latent_dim
                )
        self.eval_model = self.ema.model if self.ema is not None else self.model
        self.guarded = config.clip_gradient_norm > 0 or config.skip_gradient_norm > 0
        self.skipped_updates = (
            tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_updates")
            if config.skip_gradient_norm > 0
            else None
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            **({"ema_model": self.ema.model} if self.ema is not None else {}),
            **(
                {
                    "discriminator": self.discriminator,
                    "discriminator_optimizer": self.discriminator_optimizer,
                }
                if self.discriminator is not None
                else {}
            ),
            **(
                {"skipped_updates": self.skipped_updates}
                if self.skipped_updates is not None
                else {}
            ),  # fmt: skip
        )

        # XLA compiles the loss and its gradients; the update runs outside XLA. Without XLA
        # there is no inner function (a nested one cannot hold the batch norm's all-reduce).
        def compiled(fn):
            return tf.function(fn, jit_compile=True) if config.jit_compile else fn

        self._gradients = compiled(self._replica_gradients)
        self._replica_eval = compiled(self._replica_eval_sums)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _terms(self, images, noise, uniform, training, vae=None):
        """(log-weight terms [K, B], q(z|x)) of uint8 images [B, H, W, C] given the noise.

        noise: float32 [K, B, model.latent_dim] latent noise; uniform: float32 [K, B, H, W, C] in
        [0, 1) for a density likelihood (scored at (v + u) / 256), else None; vae: the model
        (default the trained one).
        """
        vae = vae or self.model
        x = data.to_unit_interval(images)  # [B, H, W, C] float32 in [0, 1]
        q = vae.encode(x, training=training)
        scored = x if uniform is None else likelihoods.dequantize(x, uniform)
        return vae.terms_from_noise(scored, q, noise, training), q

    def _uniform(self, shape, seed):
        """Dequantization noise [K, B, H, W, C] from the step's seed, or None (discrete)."""
        if not likelihoods.is_density(self.config.likelihood):
            return None
        size = self.config.image_size
        seed = tf.random.experimental.stateless_fold_in(seed, -1)  # a stream apart from z's
        return tf.random.stateless_uniform([*shape, size, size, 3], seed, alg="philox")

    def _replica_gradients(self, images, noise, uniform, kl_weight, permutation=None):
        """This replica's sums (nats), the gradients of its share of the global-mean loss and
        those of the discriminator's (--objective=factor_vae; else an empty list)."""
        variables = self.model.trainable_variables
        discriminated = self.discriminator is not None
        with tf.GradientTape(persistent=discriminated) as tape:
            terms, q = self._terms(images, noise, uniform, training=True)
            sums = _terms_sums(terms)
            objective = training_objective(self.config, terms, q, noise, kl_weight)
            if self.config.objective != "vae":  # a penalty on the batch's codes
                penalties = disentangle.penalty_terms(
                    self.config, q.moments(), noise, self.dataset_size, self.discriminator,
                    permutation,
                )  # fmt: skip
                objective -= penalties.pop("penalty")
                sums.update({name: tf.reduce_sum(v) for name, v in penalties.items()})
            sums["objective"] = tf.reduce_sum(objective)
            if discriminated:  # its own loss: this replica's share of the global mean
                discriminator_loss = sums["discriminator_loss"] / self.config.batch_size
            if "kl_groups" in terms:  # a hierarchy: each group's KL, summed over examples
                sums["kl_groups"] = tf.reduce_sum(tf.reduce_mean(terms["kl_groups"], 0), 0)
            loss = -sums["objective"] / self.config.batch_size  # this replica's share of the mean
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        discriminator_gradients = []
        if discriminated:  # its own loss, its own variables (the VAE's gradients come from tc)
            discriminator_gradients = tape.gradient(
                discriminator_loss, self.discriminator.trainable_variables
            )
        return sums, gradients, discriminator_gradients

    def _replica_train_step(self, images, noise, stop, kl_weight, uniform=None, permutation=None):
        local_batch = tf.shape(images)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        offset = tf.cast(replica, tf.int32) * local_batch
        noise = noise[:, offset : offset + local_batch]  # this replica's rows of the global batch
        if uniform is not None:
            uniform = uniform[:, offset : offset + local_batch]
        if permutation is not None:
            permutation = permutation[:, offset : offset + local_batch]
        sums, gradients, discriminator_gradients = self._gradients(
            images, noise, uniform, kl_weight, permutation
        )
        values = {k: sums[k] for k in TRAIN_SUMS + PENALTY_SUMS if k in sums}
        if self.guarded:
            gradients, values["gradient_norm"], values["update"] = self._guard(gradients)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        if self.discriminator is not None:
            pairs = zip(
                discriminator_gradients, self.discriminator.trainable_variables, strict=True
            )
            self.discriminator_optimizer.apply_gradients(pairs)
        if "kl_groups" in sums:  # a hierarchy: each group's KL [L], top down
            groups = tf.unstack(sums["kl_groups"])
            values.update({f"kl_group_{i}": kl for i, kl in enumerate(groups)})
        values["stop"] = stop
        # The names are known when this traces, inside `_train_step`'s trace, which unpacks by them
        self._train_names = tuple(values)
        return pack(values, self._train_names)

    def _guard(self, gradients):
        """Clipping and skipping on the global gradient (the same on every replica): returns
        this replica's gradients scaled, the global norm and 1.0 to update (0.0 to skip)."""
        config = self.config
        total = tf.distribute.get_replica_context().all_reduce("SUM", gradients)
        norm = tf.linalg.global_norm(total)
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if scaled:  # mixed_float16: the gradients are those of the loss times the loss scale
            norm = norm / tf.cast(self.optimizer.dynamic_scale, norm.dtype)
        if config.skip_gradient_norm > 0:
            update = tf.math.is_finite(norm) & (norm <= config.skip_gradient_norm)
            if scaled:  # an overflow goes on to the loss-scale optimizer, which skips it and
                update |= ~tf.math.is_finite(norm)  # lowers its scale
        else:
            update = tf.constant(True)
        factor = tf.constant(1.0)
        if config.clip_gradient_norm > 0:
            factor = tf.minimum(1.0, config.clip_gradient_norm / tf.maximum(norm, 1e-12))
        gradients = [tf.where(update, g * tf.cast(factor, g.dtype), 0) for g in gradients]
        return gradients, norm, tf.cast(update, tf.float32)

    def _train_step(self, images, seed, stop=None):
        # The noise of the whole global batch, drawn outside the replicas and outside XLA (whose
        # Philox differs from TF's kernels): a replica's loss depends on its examples only.
        config = self.config
        noise = tf.random.stateless_normal(
            [config.k, config.batch_size, self.model.latent_dim], seed, alg="philox"
        )  # [K, B, Z], Z the model's noise per sample
        uniform = self._uniform([config.k, config.batch_size], seed)  # [K, B, H, W, C] or None
        stop = tf.zeros([]) if stop is None else tf.cast(stop, tf.float32)
        kl_weight = kl_weight_at(config, seed[1])  # the loop seeds step s with (seed, s)
        permutation = None
        if self.discriminator is not None:  # FactorVAE's shuffle, a stream apart from z's
            permutation = disentangle.permutation_indices(
                tf.random.experimental.stateless_fold_in(seed, -2), noise.shape
            )  # [K, B, Z]
        args = (images, noise, stop, kl_weight)
        optional = {"uniform": uniform, "permutation": permutation}
        optional = {name: value for name, value in optional.items() if value is not None}
        restorable = self._skippable_variables()
        before = [tf.identity(v) for v in restorable]  # an update to undo if it is skipped
        packed = self.strategy.run(self._replica_train_step, args=args, kwargs=optional)
        # One all-reduce carries the sums and every worker's stop request (the stop protocol).
        total = unpack(self.strategy.reduce("SUM", packed, axis=None), self._train_names)
        means = {k: total[k] / config.batch_size for k in TRAIN_SUMS}
        updated = tf.constant(True)
        result = {"loss": -means["objective"], **means, "stop": total["stop"]}
        if self.guarded:
            replicas = float(self.strategy.num_replicas_in_sync)
            result["gradient_norm"] = total["gradient_norm"] / replicas
            updated = total["update"] > 0.5 * replicas  # the same on every replica
            for variable, value in zip(restorable, before, strict=True):
                variable.assign(tf.where(updated, variable, value))
        for name in total:  # a hierarchy's groups, top down; --objective's penalties
            if name.startswith("kl_group_") or name in PENALTY_SUMS:
                result[name] = total[name] / config.batch_size
        if self.skipped_updates is not None:
            self.skipped_updates.assign_add(1 - tf.cast(updated, tf.int64))
            result["skipped_updates"] = tf.cast(self.skipped_updates, tf.float32)
        if self.ema is not None:
            self.ema.update(self.model, seed[1], updated)
        if config.kl_weight != 1 or config.kl_warmup_steps or config.free_bits:
            result["kl_weight"] = kl_weight
        return result

    def _skippable_variables(self) -> list:
        """What a skipped update must leave as it was: weights, batch-norm statistics (a NaN
        forward pass would poison them) and optimizer state."""
        if self.skipped_updates is None:
            return []
        discriminator = []
        if self.discriminator is not None:
            discriminator = [*self.discriminator.variables, *self.discriminator_optimizer.variables]
        return [*self.model.variables, *self.optimizer.variables, *discriminator]

    def _replica_eval_step(self, batch, seed):
        # Each example's noise derives from (seed, its index): the same on any replica layout.
        config = self.config
        noise = per_example_noise(seed, batch["index"], config.k, self.model.latent_dim)
        uniform = None
        if likelihoods.is_density(config.likelihood):
            shape = tf.shape(batch["image"])[1:]
            uniform = per_sample_uniform(seed, batch["index"], 0, config.k, shape)
        return self._replica_eval(batch["image"], noise, batch["weight"], uniform)

    def _replica_eval_sums(self, images, noise, weight, uniform):
        # The model's own bounds: no training control; with an EMA, its weights.
        terms, _ = self._terms(images, noise, uniform, training=False, vae=self.eval_model)
        sums = _terms_sums(terms, weight)
        sums["count"] = tf.reduce_sum(weight)
        return pack(sums, EVAL_NAMES)

    def _eval_step(self, batch, seed):
        packed = self.strategy.run(self._replica_eval_step, args=(batch, seed))
        return unpack(self.strategy.reduce("SUM", packed, axis=None), EVAL_NAMES)
