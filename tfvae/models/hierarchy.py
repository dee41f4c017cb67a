"""A hierarchical VAE: a bottom-up encoder and a top-down decoder with groups of latents at
several resolutions (VDVAE's layout, NVAE's residual posterior), under the package's contract.

Bottom-up: a 3x3 convolution of x in [-1, 1] to `width` channels, then at every resolution from
the image's down to the top group's `residual_cells` residual cells and a 2x average pool; the
features after each resolution's cells condition that resolution's posteriors.

Top-down: a learned [r0, r0, width] map (r0 the top group's resolution); at each resolution,
upsampled 2x (nearest) from the one above, each latent group l does
  prior:      p(z_l | z_<l)    = N(mu_p, sigma_p^2)              (a cell of the top-down state h)
  posterior:  q(z_l | x, z_<l) = N(mu_p + dmu, (sigma_p dsigma)^2)  (a cell of h and the
              bottom-up features: NVAE's residual normal, relative to the prior)
  z_l = loc + scale * eps_l, then h <- cell(h + prior features + 1x1 conv(z_l)),
with `latent_channels` channels per position; resolutions without groups get `residual_cells`
cells. A 1x1 convolution of the full-resolution h gives the pixel likelihood's parameters
(`likelihoods.make`; PixelCNN++'s and VDVAE's output layer).

The model's noise is eps, standard normal, flat float32 [K, B, noise_dim] with noise_dim the sum
over groups of r_l^2 latent_channels (`group_shapes`), so the train step and the evaluation draw
it outside the replicas and XLA from (seed, step) and (seed, example) as for the DCGAN model. Its
log-weights sum the groups: log p(x|z) + sum_l log p(z_l|z_<l) - sum_l log q(z_l|x, z_<l), each
float32 nats. Prior draws are made in the same coordinates: eps ~ N(0, T^2 I) (`prior`, the
standard normal over noise_dim) decoded with z_l = mu_p + sigma_p eps_l, i.e. every group at
temperature T as NVAE samples. Layers compute in `dtype`; every distribution is float32.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfvae.config import parse_latent_groups
from tfvae.models import likelihoods, objectives, posteriors, priors

_LOG_2PI = math.log(2.0 * math.pi)


def _gaussian_log_prob(z, loc, log_scale):
    """sum over [H, W, C] of log N(z; loc, exp(log_scale)^2), float32 [N] nats."""
    standardized = (z - loc) * tf.exp(-log_scale)
    per_value = -0.5 * tf.square(standardized) - log_scale - 0.5 * _LOG_2PI
    return tf.reduce_sum(per_value, axis=[1, 2, 3])


def _soft_clamp(log_scale, bound=5.0):
    """bound tanh(x / bound): a log-scale kept within +-bound (NVAE's soft clamp)."""
    return bound * tf.tanh(log_scale / bound)


class ResidualCell(keras.layers.Layer):
    """VDVAE's cell: GELU, 1x1 to `width // 2`, GELU, 3x3, GELU, 3x3, GELU, 1x1 to `out`.

    [N, h, w, c] -> [N, h, w, out], plus the input when `residual` (out = c then). The last
    convolution starts at `last_scale` times Glorot's weights (1/sqrt(cells) keeps a deep stack's
    state bounded at initialisation, 0 starts a prior at N(0, I)).
    """

    def __init__(self, out_channels, middle, residual=True, last_scale=1.0, dtype=None):
        super().__init__(dtype=dtype)
        self.residual = residual
        scaled = keras.initializers.VarianceScaling(
            max(last_scale, 1e-12) ** 2, "fan_avg", "uniform"
        )
        last = scaled if last_scale > 0 else "zeros"
        self.convs = [
            keras.layers.Conv2D(middle, 1, dtype=dtype),
            keras.layers.Conv2D(middle, 3, padding="same", dtype=dtype),
            keras.layers.Conv2D(middle, 3, padding="same", dtype=dtype),
            keras.layers.Conv2D(out_channels, 1, kernel_initializer=last, dtype=dtype),
        ]
        for i, conv in enumerate(self.convs):  # tracked by name for tf.train.Checkpoint
            setattr(self, f"conv_{i}", conv)

    def call(self, x):
        h = x
        for conv in self.convs:
            h = conv(tf.nn.gelu(h))
        return x + h if self.residual else h


class BottomUp(keras.Model):
    """x float32 [B, H, W, 3] in [0, 1] -> {resolution: features [B, r, r, width]}."""

    def __init__(self, image_size, width, residual_cells, top_resolution, dtype="float32"):
        super().__init__(dtype=dtype)
        self.stem = keras.layers.Conv2D(width, 3, padding="same", dtype=dtype)
        self.resolutions = []
        r = image_size
        while r >= top_resolution:
            self.resolutions.append(r)
            r //= 2
        cells = len(self.resolutions) * residual_cells
        self.cells = {
            r: [
                ResidualCell(width, width // 2, last_scale=cells**-0.5, dtype=dtype)
                for _ in range(residual_cells)
            ]
            for r in self.resolutions
        }
        for r, group in self.cells.items():
            for i, cell in enumerate(group):
                setattr(self, f"cell_{r}_{i}", cell)

    def call(self, x):
        h = self.stem(x * 2.0 - 1.0)
        features = {}
        for r in self.resolutions:
            for cell in self.cells[r]:
                h = cell(h)
            features[r] = h
            if r > self.resolutions[-1]:
                h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
        return features


class GroupBlock(keras.layers.Layer):
    """One latent group of the top-down pass (see the module doc), `channels` per position."""

    def __init__(self, width, channels, cell_scale, dtype=None):
        super().__init__(dtype=dtype)
        self.channels = channels
        middle = width // 2
        self.prior = ResidualCell(2 * channels + width, middle, False, last_scale=0.0, dtype=dtype)
        self.posterior = ResidualCell(2 * channels, middle, False, dtype=dtype)
        self.project = keras.layers.Conv2D(
            width,
            1,
            kernel_initializer=keras.initializers.VarianceScaling(cell_scale**2, "fan_avg"),
            dtype=dtype,
        )
        self.cell = ResidualCell(width, middle, last_scale=cell_scale, dtype=dtype)

    def prior_of(self, h):
        """(loc, log_scale) float32 [N, r, r, c] of p(z_l|z_<l) and the state's update."""
        out = self.prior(h)
        c = self.channels
        params = tf.cast(out[..., : 2 * c], tf.float32)
        return params[..., :c], _soft_clamp(params[..., c:]), out[..., 2 * c :]

    def posterior_of(self, h, features, prior_loc, prior_log_scale):
        """(loc, log_scale) float32 of q(z_l|x, z_<l): the prior's, shifted and rescaled."""
        delta = tf.cast(self.posterior(tf.concat([h, features], -1)), tf.float32)
        shift, log_ratio = tf.split(delta, 2, axis=-1)
        return prior_loc + shift, prior_log_scale + _soft_clamp(log_ratio)

    def update(self, h, prior_features, z):
        """The next top-down state from h [N, r, r, width] and z float32 [N, r, r, c]."""
        h = h + prior_features + self.project(tf.cast(z, self.compute_dtype))
        return self.cell(h)


class TopDown(keras.Model):
    """Prior, posterior and decoder of the hierarchy; see the module doc."""

    def __init__(self, config, dtype="float32"):
        super().__init__(dtype=dtype, autocast=False)  # the noise stays float32
        width, size = config.width, config.image_size
        self.groups = parse_latent_groups(config.latent_groups, size)
        self.channels = config.latent_channels
        self.likelihood = config.likelihood
        self.gaussian_scale = config.gaussian_scale
        self.mixture_components = config.mixture_components
        self.scale_floor = config.likelihood_scale_floor
        self.top_resolution = self.groups[0][0]
        per_resolution = dict(self.groups)
        self.resolutions = []
        r = self.top_resolution
        while r <= size:
            self.resolutions.append(r)
            r *= 2
        blocks = sum(per_resolution.values())
        plain = config.residual_cells * sum(r not in per_resolution for r in self.resolutions)
        cell_scale = (blocks + plain) ** -0.5
        self.blocks = {
            r: [
                GroupBlock(width, self.channels, cell_scale, dtype=dtype)
                for _ in range(per_resolution.get(r, 0))
            ]
            for r in self.resolutions
        }
        self.plain_cells = {
            r: [
                ResidualCell(width, width // 2, last_scale=cell_scale, dtype=dtype)
                for _ in range(0 if r in per_resolution else config.residual_cells)
            ]
            for r in self.resolutions
        }
        for r in self.resolutions:
            for i, block in enumerate(self.blocks[r]):
                setattr(self, f"group_{r}_{i}", block)
            for i, cell in enumerate(self.plain_cells[r]):
                setattr(self, f"cell_{r}_{i}", cell)
        top = self.top_resolution
        self.start = self.add_weight(shape=(1, top, top, width), initializer="zeros", name="start")
        out_channels = likelihoods.parameter_channels(
            config.likelihood, config.gaussian_scale, mixture_components=config.mixture_components
        )
        self.to_params = keras.layers.Conv2D(out_channels, 1, dtype=dtype)

    def build(self, input_shape):  # the cells build on their first call
        self.built = True

    def group_shapes(self) -> list[tuple[int, int, int]]:
        """[r, r, latent_channels] of every group, top down."""
        return [(r, r, self.channels) for r, n in self.groups for _ in range(n)]

    def call(self, noise, features=None):
        """The top-down pass for N = K B codes.

        Args:
          noise: float32 [N, noise_dim] eps of every group (flattened, top down): standard
            normal for the posterior, T times that for a prior draw at temperature T.
          features: bottom-up {resolution: [N, r, r, width]} (the posterior), or None (the prior).

        Returns:
          {"p_x": p(x|z), batch [N]; "log_p": log p(z_l|z_<l) [N, L]; "log_q": log q(z_l|x, z_<l)
          [N, L] (None without features); "z", "loc", "log_scale": every group's z and the
          parameters of the Gaussian it was drawn from, and "prior_noise": (z - mu_p) / sigma_p,
          the noise that decodes to the same z through the prior, each flattened as the noise
          [N, noise_dim]}, all float32 (nats).
        """
        n = tf.shape(noise)[0]
        h = tf.tile(tf.cast(self.start, self.compute_dtype), [n, 1, 1, 1])
        offset = 0
        drawn = {k: [] for k in ("log_p", "log_q", "z", "loc", "log_scale", "prior_noise")}
        for r in self.resolutions:
            if r > self.top_resolution:
                h = tf.repeat(tf.repeat(h, 2, axis=1), 2, axis=2)  # nearest, 2x
            for block in self.blocks[r]:
                size = r * r * self.channels
                eps = tf.reshape(noise[:, offset : offset + size], [-1, r, r, self.channels])
                offset += size
                prior_loc, prior_log_scale, prior_features = block.prior_of(h)
                if features is None:
                    loc, log_scale = prior_loc, prior_log_scale
                else:
                    loc, log_scale = block.posterior_of(h, features[r], prior_loc, prior_log_scale)
                z = loc + tf.exp(log_scale) * eps
                drawn["log_p"].append(_gaussian_log_prob(z, prior_loc, prior_log_scale))
                if features is not None:
                    drawn["log_q"].append(_gaussian_log_prob(z, loc, log_scale))
                prior_noise = (z - prior_loc) * tf.exp(-prior_log_scale)
                for name, value in (("z", z), ("loc", loc), ("log_scale", log_scale),
                                    ("prior_noise", prior_noise)):  # fmt: skip
                    drawn[name].append(tf.reshape(value, [n, size]))
                h = block.update(h, prior_features, z)
            for cell in self.plain_cells[r]:
                h = cell(h)
        p_x = likelihoods.make(
            self.likelihood, self.params_of(h), self.gaussian_scale, self.mixture_components,
            self.scale_floor,
        )  # fmt: skip
        out = {k: tf.concat(drawn[k], -1) for k in ("z", "loc", "log_scale", "prior_noise")}
        out["log_p"] = tf.stack(drawn["log_p"], axis=-1)
        out["log_q"] = tf.stack(drawn["log_q"], axis=-1) if features is not None else None
        return {"p_x": p_x, **out}

    def top_group_posterior(self, features):
        """q(eps_0|x) of the top group in prior-noise units, eps_0 = (z_0 - mu_p) / sigma_p:
        (mean, scale) float32 [B, r0 r0 c], a diagonal Gaussian (exact: no group is above it)."""
        r = self.top_resolution
        n = tf.shape(features[r])[0]
        h = tf.tile(tf.cast(self.start, self.compute_dtype), [n, 1, 1, 1])
        block = self.blocks[r][0]
        prior_loc, prior_log_scale, _ = block.prior_of(h)
        loc, log_scale = block.posterior_of(h, features[r], prior_loc, prior_log_scale)
        mean = (loc - prior_loc) * tf.exp(-prior_log_scale)
        return tf.reshape(mean, [n, -1]), tf.reshape(tf.exp(log_scale - prior_log_scale), [n, -1])

    def params_of(self, h):
        """The pixel likelihood's parameters [N, H, W, P] of the full-resolution state h."""
        return self.to_params(tf.nn.gelu(h))


class HierarchicalPosterior:
    """What `HierarchicalVAE.encode` returns: the bottom-up features of B images. Its groups'
    posteriors depend on the groups above, so z is drawn by the model's top-down pass
    (`HierarchicalVAE.terms_from_noise`), from standard-normal noise [K, B, noise_dim]."""

    takes_noise = True

    def __init__(self, features, top_down, noise_dim):
        self.features, self.top_down, self.noise_dim = features, top_down, noise_dim

    def code(self):
        """The zero-noise code, float32 [B, noise_dim]: every group at its posterior mean given
        those above, written as the prior noise that decodes to it (`HierarchicalVAE.decode`
        of it is the reconstruction's p(x|z))."""
        batch = tf.shape(next(iter(self.features.values())))[0]
        return self.code_of(tf.zeros([batch, self.noise_dim]))

    def code_of(self, noise):
        """The code of the posterior draw from noise float32 [B, noise_dim] (standard normal):
        every group's z written as the prior noise that decodes to it, float32 [B, noise_dim]
        (`HierarchicalVAE.decode` of it draws the same z; the codes samplers of several groups
        are fitted to)."""
        return self.top_down(noise, self.features)["prior_noise"]

    def top_group(self):
        """(mean, scale) float32 [B, top_dim]: the top group's posterior in code units (the
        codes samplers are fitted to; `TopDown.top_group_posterior`)."""
        return self.top_down.top_group_posterior(self.features)


class HierarchicalVAE(keras.Model):
    """Bottom-up encoder + top-down decoder; the methods of `vae.VAE` that callers use."""

    def __init__(self, config, dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.config = config
        groups = parse_latent_groups(config.latent_groups, config.image_size)
        self.encoder = BottomUp(
            config.image_size, config.width, config.residual_cells, groups[0][0], dtype
        )
        self.decoder = TopDown(config, dtype)
        shapes = self.decoder.group_shapes()
        self.noise_dim = sum(h * w * c for h, w, c in shapes)
        self.top_dim = math.prod(shapes[0])  # the top group's share of the code, first in it
        self.latent_dim = self.noise_dim
        self.prior = priors.standard_normal(self.noise_dim)  # of eps; see the module doc
        self.top_prior = priors.standard_normal(self.top_dim)  # the top group in code units

    def build(self, input_shape):  # the parts build on their first call
        self.built = True

    def group_slices(self) -> list[tuple[int, int]]:
        """[start, stop) of each latent group in the flat code, top down."""
        sizes = [math.prod(shape) for shape in self.decoder.group_shapes()]
        stops = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        return list(zip([0, *stops[:-1]], stops, strict=True))

    def call(self, x, training=False):
        return self.log_weights(x, 1, training=training)

    def encode(self, x, training=False):
        """x float32 [B, H, W, 3] in [0, 1] -> HierarchicalPosterior (the bottom-up pass)."""
        features = self.encoder(tf.convert_to_tensor(x, tf.float32))
        return HierarchicalPosterior(features, self.decoder, self.noise_dim)

    def terms_from_noise(self, x, q, noise, training=False):
        """log p(x|z), log p(z), log q(z|x) and the groups' KL, float32 [K, B] ([K, B, L]).

        x: float32 [B, H, W, C] in [0, 1] (or [K, B, H, W, C], one scored x per sample); q: this
        model's `encode(x)`; noise: float32 [K, B, noise_dim] standard normal.
        """
        shape = tf.shape(noise)
        k, b = shape[0], shape[1]
        tiled = {
            r: tf.reshape(
                tf.broadcast_to(f[None], tf.concat([[k], tf.shape(f)], 0)),
                tf.concat([[-1], tf.shape(f)[1:]], 0),
            )
            for r, f in q.features.items()
        }  # [K B, r, r, width], sample-major as the noise
        top_down = self.decoder(tf.reshape(noise, [-1, shape[2]]), tiled)
        log_q, log_p = top_down["log_q"], top_down["log_p"]  # [K B, L]
        image_shape = tf.shape(x)[-3:]
        x_tiled = tf.reshape(
            tf.broadcast_to(x, tf.concat([[k, b], image_shape], 0)),
            tf.concat([[-1], image_shape], 0),
        )
        by_sample = lambda t: tf.reshape(tf.cast(t, tf.float32), [k, b])  # noqa: E731
        return {
            "log_px_z": by_sample(top_down["p_x"].log_prob(x_tiled)),
            "log_pz": by_sample(tf.reduce_sum(log_p, -1)),
            "log_qz_x": by_sample(tf.reduce_sum(log_q, -1)),
            "kl_groups": tf.reshape(log_q - log_p, [k, b, -1]),
        }

    def log_weight_terms(self, x, num_samples, training=False, seed=None, noise=None):
        """As `vae.VAE.log_weight_terms` (noise: float32 [K, B, noise_dim]); adds kl_groups."""
        x = tf.convert_to_tensor(x, tf.float32)
        q = self.encode(x, training=training)
        if noise is None:
            shape = [num_samples, tf.shape(x)[0], self.noise_dim]
            noise = posteriors.standard_noise(shape, seed)
        return self.terms_from_noise(x, q, noise, training)

    def log_weights(self, x, num_samples, training=False, seed=None, noise=None):
        """log p(x|z_k) + log p(z_k) - log q(z_k|x), float32 [K, B] nats; x float32 [0, 1]."""
        terms = self.log_weight_terms(x, num_samples, training, seed, noise)
        return objectives.log_weights_from_terms(terms)

    def decode(self, z, training=False):
        """eps float32 [N, noise_dim] -> p(x|z), batch [N], with every z_l = mu_p + sigma_p eps_l
        (a prior draw at temperature T when eps ~ N(0, T^2 I))."""
        return self.decoder(tf.convert_to_tensor(z, tf.float32))["p_x"]

    def reconstruct(self, x):
        """Point estimate of p(x|z) at every group's posterior mean, float32 [B, H, W, C]."""
        x = tf.convert_to_tensor(x, tf.float32)
        q = self.encode(x)
        zero = tf.zeros([tf.shape(x)[0], self.noise_dim])  # every group at its posterior mean
        return likelihoods.point_estimate(self.decoder(zero, q.features)["p_x"])

    def sample(self, n=None, seed=None, z=None, temperature=1.0):
        """Images of prior draws (or of given eps [N, noise_dim]), float32 [N, H, W, C] in
        [0, 1]: every group at temperature T (eps ~ N(0, T^2 I), see the module doc)."""
        return priors.decoded_draws(self, n, seed, z, temperature)


def build(config, dtype: str = "float32") -> HierarchicalVAE:
    """The hierarchical VAE of a Config, weights created (from the global Keras seed)."""
    model = HierarchicalVAE(config, dtype)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
    return model
