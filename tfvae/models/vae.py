"""The VAE: an encoder q(z|x), a decoder p(x|z) and a prior p(z), all TFP distributions.

Any encoder/decoder pair keeping the contract works (see DESIGN.md): `encoder(x, training)`
returns q(z|x) with batch [B] and event [Z]; `decoder(z, training)` returns p(x|z) with batch [N]
and event [H, W, C] over x in [0, 1]. Pixels are float32 in [0, 1]; log-probabilities float32 nats.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models import hierarchy, likelihoods, networks, objectives, posteriors, priors

tfd = tfp.distributions


standard_normal = priors.standard_normal  # N(0, I) over [latent_dim], float32


class VAE(keras.Model):
    """Encoder + decoder + prior (default N(0, I) over `encoder.latent_dim`)."""

    def __init__(self, encoder, decoder, prior=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior if prior is not None else standard_normal(encoder.latent_dim)

    def call(self, x, training=False):
        return self.log_weights(x, 1, training=training)

    @property
    def noise_dim(self) -> int:
        """Z: the standard-normal noise per sample that `terms_from_noise` takes."""
        return self.encoder.latent_dim

    @property
    def top_dim(self) -> int:
        """The code's top group: here the whole code (one group), Z."""
        return self.noise_dim

    @property
    def top_prior(self) -> tfd.Distribution:
        """The prior of the top group's codes [top_dim]: here the model's prior."""
        return self.prior

    def group_slices(self) -> list[tuple[int, int]]:
        """[start, stop) of each latent group in the code: one group, [(0, Z)]."""
        return [(0, self.noise_dim)]

    def terms_from_noise(self, x, q, noise, training=False):
        """log p(x|z), log p(z), log q(z|x), float32 [K, B] nats, for z = `posteriors.draw(q,
        noise)`: q = encode(x), noise float32 [K, B, Z] (x as in `joint_terms`)."""
        z, log_qz_x = posteriors.draw(q, noise)  # [K, B, Z], [K, B]
        return self.joint_terms(x, q, z, training=training, log_qz_x=log_qz_x)

    def encode(self, x, training=False):
        """x float32 [B, H, W, C] in [0, 1] -> q(z|x), batch [B], event [Z]."""
        return self.encoder(x, training=training)

    def decode(self, z, training=False):
        """z float32 [N, Z] -> p(x|z), batch [N], event [H, W, C] over [0, 1]."""
        return self.decoder(z, training=training)

    def log_weight_terms(self, x, num_samples, training=False, seed=None, noise=None):
        """The three terms of the log-weights, each float32 [K, B] in nats.

        Args:
          x: float32 [B, H, W, C] in [0, 1].
          num_samples: K, importance samples per example.
          seed: int [2] stateless seed (None: TFP's stateful sampling).
          noise: optional float32 [K, B, Z] standard-normal noise; z is then
            `posteriors.draw(q, noise)` (the train step draws it outside the replicas and XLA,
            so the loss is the same on any number of replicas and with or without
            --jit_compile).

        Returns:
          {"log_px_z": log p(x|z_k), "log_pz": log p(z_k), "log_qz_x": log q(z_k|x)}.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        q = self.encode(x, training=training)
        if noise is None and isinstance(q, posteriors.InverseAutoregressivePosterior):
            shape = tf.concat([[num_samples], tf.shape(q.base.loc)], 0)  # its own log q: 1 pass
            noise = posteriors.standard_noise(shape, seed)
        if noise is not None:
            return self.terms_from_noise(x, q, noise, training)
        z = q.sample(num_samples, seed=seed)  # [K, B, Z]
        return self.joint_terms(x, q, z, training=training)

    def joint_terms(self, x, q, z, training=False, log_qz_x=None):
        """log p(x|z), log p(z), log q(z|x) for given z float32 [K, B, Z]: each float32 [K, B].

        x is float32 [B, H, W, C], or [K, B, H, W, C] to score each sample at its own x (the
        dequantized pixels of a density likelihood; q stays the one given). log_qz_x: q's
        log-density of z when the caller has it already (`posteriors.draw`), else computed.
        """
        shape = tf.shape(z)
        decoded = self.decode(tf.reshape(z, [-1, shape[2]]), training=training)  # batch [K*B]
        image_shape = tf.shape(x)[-3:]
        x_tiled = tf.reshape(
            tf.broadcast_to(x, tf.concat([shape[:2], image_shape], 0)),
            tf.concat([[-1], image_shape], 0),
        )  # [K*B, H, W, C]
        log_px_z = tf.reshape(decoded.log_prob(x_tiled), shape[:2])
        return {
            "log_px_z": tf.cast(log_px_z, tf.float32),
            "log_pz": tf.cast(self.prior.log_prob(z), tf.float32),
            "log_qz_x": tf.cast(q.log_prob(z) if log_qz_x is None else log_qz_x, tf.float32),
        }

    def log_weights(self, x, num_samples, training=False, seed=None, noise=None):
        """log p(x|z_k) + log p(z_k) - log q(z_k|x), float32 [K, B] nats; x float32 [0, 1]."""
        terms = self.log_weight_terms(x, num_samples, training, seed, noise)
        return objectives.log_weights_from_terms(terms)

    def reconstruct(self, x):
        """Point estimate of p(x|z) at the zero-noise code z (`posteriors.code`: the mean of a
        diagonal q), float32 [B, H, W, C] in [0, 1]."""
        return likelihoods.point_estimate(self.decode(posteriors.code(self.encode(x))))

    def sample(self, n=None, seed=None, z=None, temperature=1.0):
        """Images decoded from prior draws (or from given z [N, Z]), float32 [N, H, W, C] in [0, 1].

        Each image is the point estimate of p(x|z) (see likelihoods.point_estimate).

        Args:
          n: number of prior draws (when z is None).
          seed: int [2] stateless seed of the draws (None: stateful).
          z: float32 [N, Z] codes to decode instead of drawing.
          temperature: T > 0 scales the prior's noise (`priors.sample`): z ~ N(0, T^2 I) for the
            default prior (NVAE samples at T < 1). Only for draws: with z given it must be 1.
        """
        return priors.decoded_draws(self, n, seed, z, temperature)


def build(config, dtype: str = "float32", synchronized_batch_norm: bool = False):
    """The model of a Config, with weights created (initialised from the global Keras seed):
    a VAE, or a `hierarchy.HierarchicalVAE` for --architecture=hierarchical.

    Args:
      config: tfvae.config.Config.
      dtype: Keras dtype policy of the layers ('float32', 'mixed_float16', 'mixed_bfloat16').
      synchronized_batch_norm: batch statistics over all replicas (use with several replicas;
        the hierarchy has no batch norm).
    """
    if config.architecture == "hierarchical":
        return hierarchy.build(config, dtype)
    shared = dict(
        width=config.width,
        num_stages=config.num_stages,
        kernel_size=config.kernel_size,
        dtype=dtype,
        synchronized_batch_norm=synchronized_batch_norm,
    )
    encoder = networks.Encoder(
        latent_dim=config.latent_dim,
        scale_floor=config.posterior_scale_floor,
        posterior=config.posterior,
        flow_layers=config.flow_layers,
        flow_width=config.flow_width,
        **shared,
    )
    decoder = networks.Decoder(
        upsampling=config.upsampling,
        likelihood=config.likelihood,
        gaussian_scale=config.gaussian_scale,
        scale_floor=config.likelihood_scale_floor,
        mixture_components=config.mixture_components,
        mixture_head_channels=config.mixture_head_channels,
        **shared,
    )
    vae = VAE(encoder, decoder, priors.build(config, encoder))
    vae(tf.zeros([1, config.image_size, config.image_size, 3]))  # creates weights; Keras: built
    return vae


def _checkpoint_candidates(model_dir: str) -> list[str]:
    """Checkpoint prefixes in model_dir, newest first: the manager's record, then other files."""
    recorded = []
    with contextlib.suppress(Exception):  # an unreadable record: fall back to the files
        state = tf.train.get_checkpoint_state(model_dir)
        if state is not None:
            paths = state.all_model_checkpoint_paths
            recorded = [os.path.join(model_dir, os.path.basename(p)) for p in paths]
    on_disk = sorted(
        (p[: -len(".index")] for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))),
        key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0),
    )
    return list(dict.fromkeys(reversed(recorded + on_disk)))


def _readable(prefix: str) -> bool:
    """True if every tensor of the checkpoint at `prefix` can be read in full."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        return True
    except Exception:  # truncated or corrupt files raise many kinds of errors  # noqa: BLE001
        return False


def newest_readable_checkpoint(model_dir: str) -> str | None:
    """The newest checkpoint of model_dir whose every tensor reads back, or None if none does.

    Each unreadable newer one (a truncated file after a node was lost mid-write) is skipped with
    one warning line on stderr naming it; nothing is deleted.
    """
    for prefix in _checkpoint_candidates(model_dir):
        if os.path.exists(prefix + ".index") and _readable(prefix):
            return prefix
        print(
            f"warning: skipping unreadable checkpoint {prefix} (truncated or corrupt); "
            "trying the previous one",
            file=sys.stderr,
        )
    return None


def restore(model_dir: str, dtype: str = "float32", strategy=None):
    """Rebuilds a run's VAE from `model_dir/config.json` and its newest readable checkpoint.

    Args:
      model_dir: a training run's directory.
      dtype: Keras dtype policy of the layers.
      strategy: a tf.distribute strategy to build the model under (default: none).

    Returns:
      (config, vae, checkpoint_path): the VAE has the trained weights, or their exponential
      moving average for a run trained with --ema_decay. Raises ValueError (one line) if either
      is missing.
    """
    from tfvae import config as config_lib

    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"--model_dir={model_dir} has no config.json: not a tfvae run.")
    config = config_lib.load(config_path)
    checkpoint = newest_readable_checkpoint(model_dir)
    if checkpoint is None:
        raise ValueError(
            f"--model_dir={model_dir} has no checkpoint yet; train it first "
            f"(python -m tfvae.train --model_dir={model_dir} ...)."
        )
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        vae = build(config, dtype)
    # With --ema_decay the exponential moving average of the weights is the model handed on.
    saved_as = "ema_model" if getattr(config, "ema_decay", 0) else "model"
    tf.train.Checkpoint(**{saved_as: vae}).restore(checkpoint).expect_partial()
    return config, vae, checkpoint
