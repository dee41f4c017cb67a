"""What every tfvae model shares: the log-weights from the model's own terms, sampling, tiling
over K samples, the latent groups and their temperatures, and the walk over the groups.

A model (the DCGAN `vae.VAE`, the `hierarchy.HierarchicalVAE`) implements only what differs:
- `encode(x, training)` -> a `posteriors.Posterior` of x float32 [B, H, W, C] in [0, 1];
- `decode(z, training)` -> p(x|z), batch [N], event [H, W, C], of codes float32 [N, Z];
- `terms_from_noise(x, q, noise, training)` -> the log-weights' terms from noise [K, B, Z];
- `group_sizes()` -> the latents of each group, top down (one group: [Z]), and where a group
  has positions `group_shapes()` -> their shapes, channels last (default: [(Z_l,)]);
- `walk(q=None)` -> a `LatentWalk` over the groups in top-down order;
- a `prior` over its codes [Z] (`priors`: log_prob and sample(n, seed, temperature)).
Its code [Z] is what `decode` takes and samplers are fitted to; Z is `latent_dim` and the top
group's share of it `top_dim`. The noise every train step and estimator draws is standard
normal float32 [K, B, latent_dim]. Log-probabilities are float32 nats.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae.models import likelihoods, objectives, posteriors


def tile_samples(t, k, event_rank=3):
    """t [B, *event] (or [K, B, *event]: one per sample) as [K B, *event], sample-major as the
    noise [K, B, Z] flattened to [K B, Z]; event is t's last `event_rank` axes."""
    shape = tf.shape(t)
    event = shape[-event_rank:]
    tiled = tf.broadcast_to(t, tf.concat([[k, shape[-event_rank - 1]], event], 0))
    return tf.reshape(tiled, tf.concat([[-1], event], 0))


class LatentWalk:
    """The latent groups of one batch in top-down order, as a bits-back coder walks them.

    `next_group()` gives group l's conditional prior p(z_l | z_<l) and, with an image batch, its
    posterior q(z_l | x, z_<l) given the groups pushed so far (distributions over the group's
    latents flattened to [N, size_l]; q is None without images); `push(z_l)` fixes group l's
    latents float32 [N, size_l]; after the last group, `likelihood()` is p(x|z), batch [N].
    """

    def next_group(self):
        raise NotImplementedError

    def push(self, z):
        raise NotImplementedError

    def likelihood(self):
        raise NotImplementedError

    def next_normals(self):
        """The next group's prior and posterior as diagonal Gaussians, what a bits-back coder
        discretises: (prior loc, prior scale, posterior loc, posterior scale), float32
        [N, size_l] (the posterior's None without images). Raises ValueError (one line) where
        either is not a diagonal Gaussian."""
        raise NotImplementedError


class LatentVariableModel(keras.Model):
    """The shared half of every model (see the module doc)."""

    def call(self, x, training=False):
        return self.log_weights(x, 1, training=training)

    def group_sizes(self) -> list[int]:
        """The latents of each group in the code, top down."""
        raise NotImplementedError

    def group_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each group's latents, top down, channels last (flattened in this order
        to `group_sizes`); here each group one vector of channels."""
        return [(size,) for size in self.group_sizes()]

    @property
    def latent_dim(self) -> int:
        """Z: the latents of the code (every group), the noise per sample of a log-weight."""
        return sum(self.group_sizes())

    @property
    def top_dim(self) -> int:
        """The top group's latents, first in the code (one group: Z)."""
        return self.group_sizes()[0]

    def group_slices(self) -> list[tuple[int, int]]:
        """[start, stop) of each latent group in the code, top down."""
        stops, total = [], 0
        for size in self.group_sizes():
            total += size
            stops.append(total)
        return list(zip([0, *stops[:-1]], stops, strict=True))

    def code_prior(self, width: int):
        """The prior of the code's first `width` latents (the top groups a sampler is fitted
        to): here the whole code's, the model's prior."""
        if width != self.latent_dim:
            raise ValueError(f"A code of {width} latents is not this model's ({self.latent_dim}).")
        return self.prior

    def walk(self, q=None, n=None) -> LatentWalk:
        """The latent groups top down (`LatentWalk`): given q = `encode(x)`, each group's prior
        and posterior; without q, the priors of n codes."""
        raise NotImplementedError

    def log_weight_terms(self, x, k, training=False, seed=None, noise=None):
        """The terms of the log-weights, each float32 [K, B] nats (a hierarchy adds kl_groups
        [K, B, L]).

        Args:
          x: float32 [B, H, W, C] in [0, 1].
          k: K, importance samples per example.
          seed: int [2] stateless seed of the noise (None: stateful).
          noise: optional float32 [K, B, latent_dim] standard-normal noise (the train step
            draws it outside the replicas and XLA, so the loss is the same on any number of
            replicas and with or without --jit_compile).

        Returns:
          {"log_px_z": log p(x|z_k), "log_pz": log p(z_k), "log_qz_x": log q(z_k|x), ...}.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        q = self.encode(x, training=training)
        if noise is None:
            noise = posteriors.standard_noise([k, tf.shape(x)[0], self.latent_dim], seed)
        return self.terms_from_noise(x, q, noise, training)

    def log_weights(self, x, k, training=False, seed=None, noise=None):
        """log p(x|z_k) + log p(z_k) - log q(z_k|x), float32 [K, B] nats; x float32 [0, 1]."""
        terms = self.log_weight_terms(x, k, training, seed, noise)
        return objectives.log_weights_from_terms(terms)

    def reconstruct(self, x):
        """Point estimate of p(x|z) at the zero-noise code (`Posterior.code`), float32
        [B, H, W, C] in [0, 1]."""
        return likelihoods.point_estimate(self.decode(self.encode(x).code()))

    def sample(self, n=None, seed=None, z=None, temperature=1.0):
        """Images decoded from prior draws (or from given codes z [N, Z]), float32 [N, H, W, C]
        in [0, 1]: each the point estimate of p(x|z) (`likelihoods.point_estimate`).

        Args:
          n: number of prior draws (when z is None).
          seed: int [2] stateless seed of the draws (None: stateful).
          z: float32 [N, Z] codes to decode instead of drawing.
          temperature: T > 0 scales the prior's noise (z ~ N(0, T^2 I) for N(0, I); NVAE samples
            at T < 1), or one T per latent group top down (`latent_temperatures`). Only for
            draws: with z given it must be 1.
        """
        if not min(temperature_values(temperature)) > 0:
            raise ValueError(f"Argument `temperature` is {temperature}; it must be > 0.")
        if z is None:
            z = self.prior.sample(n, seed, self.latent_temperatures(temperature))
        elif temperature_values(temperature) != [1.0]:
            raise ValueError("Argument `temperature` applies to prior draws; scale a given z.")
        return likelihoods.point_estimate(self.decode(z))

    def latent_temperatures(self, temperature):
        """The temperature of each latent of a code [Z], top group first: a number (every group
        at it, returned as it is) or, from one T per latent group top down (a tuple, as
        `group_slices`), float32 [Z]. Raises ValueError (one line) for a tuple of another
        length."""
        if not isinstance(temperature, (tuple, list)):
            return temperature
        slices = self.group_slices()
        if len(temperature) != len(slices):
            raise ValueError(
                f"temperature {':'.join(str(float(t)) for t in temperature)} gives "
                f"{len(temperature)} value(s); "
                f"the model has {len(slices)} latent group(s): give one T, or one per group "
                "(top down, separated by ':')."
            )
        pairs = zip(slices, temperature, strict=True)
        return tf.concat([tf.fill([stop - start], float(t)) for (start, stop), t in pairs], 0)

    def with_lower_groups(self, top, seed=None, temperature=1.0):
        """A whole code float32 [N, Z] from the code of its top groups `top` [N, W] (W the top
        group's latents, or the top g groups' together): the groups below drawn from the prior
        at temperature T (a number, or one per latent group top down, of which those of the
        groups in `top` are not used here; T = 0: each at its prior mean given the groups
        above) from a seed folded out of `seed` (int [2], or None: stateful). A code that is
        already whole is returned as it is. Raises ValueError (one line) when W does not end at
        a group."""
        top = tf.convert_to_tensor(top, tf.float32)
        width = int(top.shape[-1])
        if width == self.latent_dim:
            return top
        stops = [stop for _, stop in self.group_slices()]
        if width not in stops:
            raise ValueError(
                f"A code of {width} latents does not end at a latent group; the groups end at "
                f"{', '.join(map(str, stops))}."
            )
        rest = [tf.shape(top)[0], self.latent_dim - width]
        if isinstance(temperature, (tuple, list)):  # one T per group: those below the given
            below = temperature[stops.index(width) + 1 :]
            scale = self.latent_temperatures(temperature)[width:]
        else:
            below, scale = [temperature], temperature
        if all(isinstance(t, (int, float)) and t == 0 for t in below):
            return tf.concat([top, tf.zeros(rest)], -1)  # no random op at all
        if seed is not None:
            seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1)
        lower = tf.cast(scale, tf.float32) * posteriors.standard_noise(rest, seed)
        return tf.concat([top, lower], -1)


def temperature_values(temperature) -> list:
    """A temperature as a list: [T] of a number, the values of one T per group."""
    return list(temperature) if isinstance(temperature, (tuple, list)) else [temperature]


def temperature_name(temperature) -> str:
    """'1.0' of a number, '1.0_0.8_0.6' of one T per group: the T in keys and file names
    (`samples_t{name}`)."""
    return "_".join(str(float(t)) for t in temperature_values(temperature))
