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

The model's noise is eps, standard normal, flat float32 [K, B, latent_dim] with latent_dim the sum
over groups of r_l^2 latent_channels (`group_shapes`), so the train step and the evaluation draw
it outside the replicas and XLA from (seed, step) and (seed, example) as for the DCGAN model. Its
log-weights sum the groups: log p(x|z) + sum_l log p(z_l|z_<l) - sum_l log q(z_l|x, z_<l), each
float32 nats. Prior draws are made in the same coordinates: eps ~ N(0, T^2 I) (`prior`, the
standard normal over latent_dim) decoded with z_l = mu_p + sigma_p eps_l, i.e. every group at
temperature T as NVAE samples. Layers compute in `dtype`; every distribution is float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.config import parse_latent_groups
from tfvae.models import base, gaussian, likelihoods, posteriors, priors
from tfvae.models.cells import BottomUp, GroupBlock, ResidualCell

tfd = tfp.distributions


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

    def schedule(self) -> list[tuple[str, int, object]]:
        """The pass in order: ("up", r, None) a 2x nearest upsampling to resolution r,
        ("group", r, block) a latent group, ("cell", r, cell) a residual cell."""
        steps = []
        for r in self.resolutions:
            if r > self.top_resolution:
                steps.append(("up", r, None))
            steps += [("group", r, block) for block in self.blocks[r]]
            steps += [("cell", r, cell) for cell in self.plain_cells[r]]
        return steps

    def call(self, noise, features=None):
        """The top-down pass for N = K B codes.

        Args:
          noise: float32 [N, latent_dim] eps of every group (flattened, top down): standard
            normal for the posterior, T times that for a prior draw at temperature T.
          features: bottom-up {resolution: [N, r, r, width]} (the posterior), or None (the prior).

        Returns:
          {"p_x": p(x|z), batch [N]; "log_p": log p(z_l|z_<l) [N, L]; "log_q": log q(z_l|x, z_<l)
          [N, L] (None without features); "z", "loc", "log_scale": every group's z and the
          parameters of the Gaussian it was drawn from, and "prior_noise": (z - mu_p) / sigma_p,
          the noise that decodes to the same z through the prior, each flattened as the noise
          [N, latent_dim]}, all float32 (nats).
        """
        n = tf.shape(noise)[0]
        walk = TopDownWalk(self, n, features)
        offset = 0
        drawn = {k: [] for k in ("log_p", "log_q", "z", "loc", "log_scale", "prior_noise")}
        for h, w, c in self.group_shapes():
            size = h * w * c
            eps = tf.reshape(noise[:, offset : offset + size], [-1, h, w, c])
            offset += size
            prior_loc, prior_log_scale, loc, log_scale = walk.group_parameters()
            if features is None:
                loc, log_scale = prior_loc, prior_log_scale
            z = loc + tf.exp(log_scale) * eps
            drawn["log_p"].append(
                gaussian.diagonal_log_prob(z, prior_loc, prior_log_scale, [1, 2, 3])
            )
            if features is not None:
                drawn["log_q"].append(gaussian.diagonal_log_prob(z, loc, log_scale, [1, 2, 3]))
            prior_noise = (z - prior_loc) * tf.exp(-prior_log_scale)
            for name, value in (("z", z), ("loc", loc), ("log_scale", log_scale),
                                ("prior_noise", prior_noise)):  # fmt: skip
                drawn[name].append(tf.reshape(value, [n, size]))
            walk.push_group(z)
        out = {k: tf.concat(drawn[k], -1) for k in ("z", "loc", "log_scale", "prior_noise")}
        out["log_p"] = tf.stack(drawn["log_p"], axis=-1)
        out["log_q"] = tf.stack(drawn["log_q"], axis=-1) if features is not None else None
        return {"p_x": walk.likelihood(), **out}

    def top_group_posterior(self, features):
        """q(eps_0|x) of the top group in prior-noise units, eps_0 = (z_0 - mu_p) / sigma_p:
        (mean, scale) float32 [B, r0 r0 c], a diagonal Gaussian (exact: no group is above it)."""
        n = tf.shape(features[self.top_resolution])[0]
        prior_loc, prior_log_scale, loc, log_scale = TopDownWalk(
            self, n, features
        ).group_parameters()
        mean = (loc - prior_loc) * tf.exp(-prior_log_scale)
        return tf.reshape(mean, [n, -1]), tf.reshape(tf.exp(log_scale - prior_log_scale), [n, -1])

    def likelihood_of(self, h):
        """p(x|z) of the full-resolution state h, batch [N] (`likelihoods.make`)."""
        return likelihoods.make(
            self.likelihood, self.params_of(h), self.gaussian_scale, self.mixture_components,
            self.scale_floor,
        )  # fmt: skip

    def params_of(self, h):
        """The pixel likelihood's parameters [N, H, W, P] of the full-resolution state h."""
        return self.to_params(tf.nn.gelu(h))


class TopDownWalk(base.LatentWalk):
    """The top-down pass of N codes one latent group at a time (`base.LatentWalk`): the state h
    advances through upsamplings and cells to the next group, whose prior (and, given bottom-up
    features, posterior) it then gives; pushing the group's z moves on."""

    def __init__(self, top_down, n, features=None):
        self.top_down, self.features = top_down, features
        self.h = tf.tile(tf.cast(top_down.start, top_down.compute_dtype), [n, 1, 1, 1])
        self.steps, self.position, self.group = top_down.schedule(), 0, None
        self._advance()

    def _advance(self):
        """Runs upsamplings and cells up to the next group (or the end) and takes its prior."""
        self.group = None
        while self.position < len(self.steps) and self.group is None:
            kind, r, layer = self.steps[self.position]
            self.position += 1
            if kind == "up":
                self.h = tf.repeat(tf.repeat(self.h, 2, axis=1), 2, axis=2)  # nearest, 2x
            elif kind == "cell":
                self.h = layer(self.h)
            else:
                self.group = (r, layer, *layer.prior_of(self.h))

    def group_parameters(self):
        """(prior loc, prior log-scale, posterior loc, posterior log-scale) of the next group,
        float32 [N, r, r, c]; the posterior's are None without features."""
        r, block, prior_loc, prior_log_scale, _ = self.group
        if self.features is None:
            return prior_loc, prior_log_scale, None, None
        loc, log_scale = block.posterior_of(self.h, self.features[r], prior_loc, prior_log_scale)
        return prior_loc, prior_log_scale, loc, log_scale

    def push_group(self, z):
        """Fixes the next group's z float32 [N, r, r, c] and advances to the group after it."""
        _, block, _, _, prior_features = self.group
        self.h = block.update(self.h, prior_features, z)
        self._advance()

    def next_group(self):
        """(p(z_l|z_<l), q(z_l|x, z_<l) or None): diagonal Gaussians over the group's latents
        flattened to [N, r r c], float32."""
        n = tf.shape(self.h)[0]
        prior_loc, prior_log_scale, loc, log_scale = self.group_parameters()

        def normal(loc, log_scale):
            flat = lambda t: tf.reshape(t, [n, -1])  # noqa: E731
            return tfd.MultivariateNormalDiag(flat(loc), flat(tf.exp(log_scale)))

        posterior = None if loc is None else normal(loc, log_scale)
        return normal(prior_loc, prior_log_scale), posterior

    def push(self, z):
        """Fixes the next group's latents float32 [N, r r c] (flattened as `next_group`)."""
        shape = self.group[2].shape[1:]
        self.push_group(tf.reshape(tf.convert_to_tensor(z, tf.float32), [-1, *shape]))

    def likelihood(self):
        return self.top_down.likelihood_of(self.h)

    def next_normals(self):
        """(prior loc, prior scale, posterior loc, posterior scale) of the next group, float32
        [N, r r c] (the posterior's None without features), as `next_group`'s."""
        n = tf.shape(self.h)[0]
        flat = lambda t: None if t is None else tf.reshape(t, [n, -1])  # noqa: E731
        prior_loc, prior_log_scale, loc, log_scale = self.group_parameters()
        posterior_scale = None if log_scale is None else tf.exp(log_scale)
        return flat(prior_loc), flat(tf.exp(prior_log_scale)), flat(loc), flat(posterior_scale)


class HierarchicalPosterior(posteriors.Posterior):
    """What `HierarchicalVAE.encode` returns: the bottom-up features of B images. Its groups'
    posteriors depend on the groups above, so a draw is a top-down pass; its codes are every
    group's z written as the prior noise that decodes to it (`HierarchicalVAE.decode`), and each
    group's conditional given those above comes from `HierarchicalVAE.walk(q)`."""

    def __init__(self, features, top_down, latent_dim):
        self.features, self.top_down, self.latent_dim = features, top_down, latent_dim

    def batch_size(self):
        """B, the images whose features these are (an int32 scalar tensor)."""
        return tf.shape(next(iter(self.features.values())))[0]

    def draw(self, noise):
        """(codes float32 [K, B, Z], log q(z|x) float32 [K, B] nats) from noise [K, B, Z]."""
        shape = tf.shape(noise)
        tiled = {r: base.tile_samples(f, shape[0]) for r, f in self.features.items()}
        out = self.top_down(tf.reshape(noise, [-1, shape[2]]), tiled)
        log_q = tf.reshape(tf.reduce_sum(out["log_q"], -1), shape[:2])
        return tf.reshape(out["prior_noise"], shape), log_q

    def code(self):
        """The zero-noise code, float32 [B, Z]: every group at its posterior mean given those
        above, written as the prior noise that decodes to it."""
        return self.moments()["code"]

    def moments(self) -> dict:
        """Each group's loc and scale given the groups above at their means, and their code,
        float32 [B, Z] flattened top down."""
        means = self.top_down(tf.zeros([self.batch_size(), self.latent_dim]), self.features)
        return {"code": means["prior_noise"], "loc": means["loc"],
                "scale": tf.exp(means["log_scale"])}  # fmt: skip

    def top_group(self, noise):
        """The top group's posterior in code units (exact: no group is above it) and its draw
        from noise float32 [B, top_dim] (`TopDown.top_group_posterior`)."""
        mean, scale = self.top_down.top_group_posterior(self.features)
        return mean, scale, mean + scale * noise


class HierarchicalVAE(base.LatentVariableModel):
    """Bottom-up encoder + top-down decoder; the model's prior is N(0, I) over the noise."""

    def __init__(self, config, dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.config = config
        groups = parse_latent_groups(config.latent_groups, config.image_size)
        self.encoder = BottomUp(
            config.image_size, config.width, config.residual_cells, groups[0][0], dtype
        )
        self.decoder = TopDown(config, dtype)
        self.prior = priors.standard_normal(self.latent_dim)  # of eps; see the module doc

    def build(self, input_shape):  # the parts build on their first call
        self.built = True

    def group_sizes(self) -> list[int]:
        """r_l^2 latent_channels of each group, top down."""
        return [h * w * c for h, w, c in self.group_shapes()]

    def group_shapes(self) -> list[tuple[int, int, int]]:
        """[r_l, r_l, latent_channels] of each group, top down."""
        return self.decoder.group_shapes()

    def code_prior(self, width: int):
        """The prior of the top groups' codes [width]: prior noise, N(0, I)."""
        return priors.standard_normal(width)

    def encode(self, x, training=False):
        """x float32 [B, H, W, 3] in [0, 1] -> HierarchicalPosterior (the bottom-up pass)."""
        features = self.encoder(tf.convert_to_tensor(x, tf.float32))
        return HierarchicalPosterior(features, self.decoder, self.latent_dim)

    def terms_from_noise(self, x, q, noise, training=False):
        """log p(x|z), log p(z), log q(z|x) and the groups' KL, float32 [K, B] ([K, B, L]).

        x: float32 [B, H, W, C] in [0, 1] (or [K, B, H, W, C], one scored x per sample); q: this
        model's `encode(x)`; noise: float32 [K, B, latent_dim] standard normal.
        """
        shape = tf.shape(noise)
        k, b = shape[0], shape[1]
        tiled = {r: base.tile_samples(f, k) for r, f in q.features.items()}  # [K B, r, r, w]
        top_down = self.decoder(tf.reshape(noise, [-1, shape[2]]), tiled)
        log_q, log_p = top_down["log_q"], top_down["log_p"]  # [K B, L]
        by_sample = lambda t: tf.reshape(tf.cast(t, tf.float32), [k, b])  # noqa: E731
        return {
            "log_px_z": by_sample(top_down["p_x"].log_prob(base.tile_samples(x, k))),
            "log_pz": by_sample(tf.reduce_sum(log_p, -1)),
            "log_qz_x": by_sample(tf.reduce_sum(log_q, -1)),
            "kl_groups": tf.reshape(log_q - log_p, [k, b, -1]),
        }

    def decode(self, z, training=False):
        """eps float32 [N, latent_dim] -> p(x|z), batch [N], with every z_l = mu_p + sigma_p
        eps_l (a prior draw at temperature T when eps ~ N(0, T^2 I))."""
        return self.decoder(tf.convert_to_tensor(z, tf.float32))["p_x"]

    def reconstruct(self, x):
        """Point estimate of p(x|z) at every group's posterior mean, float32 [B, H, W, C]."""
        x = tf.convert_to_tensor(x, tf.float32)
        q = self.encode(x)
        zero = tf.zeros([tf.shape(x)[0], self.latent_dim])  # every group at its posterior mean
        return likelihoods.point_estimate(self.decoder(zero, q.features)["p_x"])

    def walk(self, q=None, n=None) -> TopDownWalk:
        """The groups top down for q's images (`encode`), or for n prior codes without q."""
        if q is None:
            return TopDownWalk(self.decoder, n)
        return TopDownWalk(self.decoder, q.batch_size(), q.features)


def build(config, dtype: str = "float32") -> HierarchicalVAE:
    """The hierarchical VAE of a Config, weights created (from the global Keras seed)."""
    model = HierarchicalVAE(config, dtype)
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
    return model
