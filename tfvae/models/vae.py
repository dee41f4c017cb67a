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

import tensorflow as tf

from tfvae.models import base, hierarchy, networks, posteriors, priors


class VAE(base.LatentVariableModel):
    """Encoder + decoder + prior (default N(0, I) over `encoder.latent_dim`): one latent group.

    `encoder(x, training)` returns a Gaussian q(z|x) (a TFP multivariate normal, or a
    `posteriors.Posterior` such as the IAF's); `prior` is None, a prior layer of `priors`, or any
    TFP distribution over [Z].
    """

    def __init__(self, encoder, decoder, prior=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = priors.as_prior(prior, encoder.latent_dim)

    def group_sizes(self) -> list[int]:
        """One group: the whole code, [Z]."""
        return [self.encoder.latent_dim]

    def encode(self, x, training=False):
        """x float32 [B, H, W, C] in [0, 1] -> q(z|x), a `posteriors.Posterior`, batch [B]."""
        return posteriors.as_posterior(self.encoder(x, training=training))

    def decode(self, z, training=False):
        """z float32 [N, Z] -> p(x|z), batch [N], event [H, W, C] over [0, 1]."""
        return self.decoder(z, training=training)

    def terms_from_noise(self, x, q, noise, training=False):
        """log p(x|z), log p(z), log q(z|x), each float32 [K, B] nats, for z = q.draw(noise).

        x: float32 [B, H, W, C] in [0, 1], or [K, B, H, W, C] to score each sample at its own x
        (the dequantized pixels of a density likelihood); q = encode(x); noise float32
        [K, B, Z] standard normal.
        """
        z, log_qz_x = q.draw(noise)  # [K, B, Z], [K, B]
        shape = tf.shape(z)
        decoded = self.decode(tf.reshape(z, [-1, shape[2]]), training=training)  # batch [K*B]
        log_px_z = decoded.log_prob(base.tile_samples(x, shape[0]))
        return {
            "log_px_z": tf.reshape(tf.cast(log_px_z, tf.float32), shape[:2]),
            "log_pz": tf.cast(self.prior.log_prob(z), tf.float32),
            "log_qz_x": tf.cast(log_qz_x, tf.float32),
        }

    def walk(self, q=None, n=None) -> base.LatentWalk:
        """The one group: the prior and q (None without q), then p(x|z) of the pushed z."""
        return _OneGroupWalk(self, q, n)


class _OneGroupWalk(base.LatentWalk):
    def __init__(self, model, q, n=None):
        self.model, self.q, self.n, self.z = model, q, n, None

    def next_group(self):
        """(the model's prior over [Z], q(z|x) or None)."""
        return self.model.prior, self.q

    def push(self, z):
        self.z = tf.convert_to_tensor(z, tf.float32)

    def likelihood(self):
        return self.model.decode(self.z)

    def next_normals(self):
        """N(0, I) and the encoder's diagonal Gaussian, float32 [N, Z] (`base.LatentWalk`)."""
        if not isinstance(self.model.prior, priors.StandardNormal):
            raise ValueError(
                f"The model's prior is a {type(self.model.prior).__name__}; bits-back coding "
                "here needs the standard normal prior (--prior=normal)."
            )
        posterior_loc = posterior_scale = None
        if self.q is not None:
            diagonal = getattr(self.q, "distribution", None)
            if not isinstance(diagonal, posteriors.tfd.MultivariateNormalDiag):
                raise ValueError(
                    f"The model's posterior is a {type(self.q).__name__}; bits-back coding here "
                    "needs a diagonal Gaussian posterior (--posterior=diagonal)."
                )
            moments = self.q.moments()
            posterior_loc, posterior_scale = moments["loc"], moments["scale"]
        n = self.n if self.q is None else tf.shape(posterior_loc)[0]
        shape = [n, self.model.latent_dim]
        return tf.zeros(shape), tf.ones(shape), posterior_loc, posterior_scale


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
