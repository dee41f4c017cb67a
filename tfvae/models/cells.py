"""The hierarchy's building blocks (`hierarchy`): VDVAE's residual cell, the bottom-up pass, and
one latent group's block of the top-down pass (its prior, posterior and state update).

Layers compute in their dtype; every distribution parameter they return is float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae.models import gaussian


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
        return params[..., :c], gaussian.soft_clamp(params[..., c:]), out[..., 2 * c :]

    def posterior_of(self, h, features, prior_loc, prior_log_scale):
        """(loc, log_scale) float32 of q(z_l|x, z_<l): the prior's, shifted and rescaled."""
        delta = tf.cast(self.posterior(tf.concat([h, features], -1)), tf.float32)
        shift, log_ratio = tf.split(delta, 2, axis=-1)
        return prior_loc + shift, prior_log_scale + gaussian.soft_clamp(log_ratio)

    def update(self, h, prior_features, z):
        """The next top-down state from h [N, r, r, width] and z float32 [N, r, r, c]."""
        h = h + prior_features + self.project(tf.cast(z, self.compute_dtype))
        return self.cell(h)
