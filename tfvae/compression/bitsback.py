"""Bits-back coding of one batch of images with a model's latent groups (HiLLoC's order).

Encode: top down, pop each group's bins from its posterior q(z_l | x, z_<l) given the groups
above at their bin centres (`latents`), pushing the centres into the model's walk; push the
pixels under p(x | z), channel by channel; push each group's bins under its prior, bottom up.
Decode undoes it in reverse: pop the groups top down under their priors (the centres into a
prior-only walk), pop the pixels channel by channel, then, the images known, rebuild the
posteriors and push the bins back, bottom up.

`grid` is a discretisation of `latents` (`Grid` or `EqualMass`): `prior(n)` and
`posterior(prior loc, prior scale, loc, scale)` codecs of flat bins, and their `centres`.

Determinism: every table a decoder needs is computed on both sides by the same calls with the
same inputs and batch shape: priors and pixel probabilities from the prior-only walk
`model.walk(n=N)` fed the bin centres, posteriors from `model.walk(model.encode(x))` with x the
uint8 pixels / 255 in float32; then float64 numpy (`ans.quantised`, `latents`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvae.compression import ans
from tfvae.models import likelihoods

_TOP = 255.0


def _pixels_codec(likelihood, channel: int, level) -> ans.Categorical:
    """The codec of one channel of every pixel [N H W] given the channels before it."""
    log_probs = likelihoods.channel_log_probs(likelihood, channel, level).numpy()
    return ans.Categorical(ans.quantised(log_probs.reshape(-1, log_probs.shape[-1])))


def posterior_walk(model, images):
    """The walk of q = encode(x), x float32 [N, H, W, C] = uint8 images / 255."""
    x = tf.convert_to_tensor(np.asarray(images, np.uint8).astype(np.float32) / _TOP)
    return model.walk(model.encode(x))


def _prior(walk):
    """The next group's prior (loc, scale) float32 numpy [N, S_l] of a prior-only walk."""
    loc, scale, _, _ = walk.next_normals()
    return loc.numpy(), scale.numpy()


def _before(level, channel: int) -> np.ndarray:
    """The levels with channel `channel` and those after it zeroed: what a decoder knows."""
    known = np.array(level, np.float32)
    known[..., channel:] = 0.0
    return known


def encode(coder, model, images, grid) -> list[np.ndarray]:
    """Pushes uint8 images [N, H, W, C] onto the ANS stack `coder` (see the module doc);
    returns the bins int [N, S_l] of each group it coded them with, top down."""
    images = np.asarray(images, np.uint8)
    n = len(images)
    q_walk, prior_walk = posterior_walk(model, images), model.walk(n=n)
    bins = []
    for _ in model.group_sizes():
        prior_loc, prior_scale = _prior(prior_walk)
        _, _, loc, scale = q_walk.next_normals()
        codec = grid.posterior(prior_loc, prior_scale, loc.numpy(), scale.numpy())
        chosen = codec.pop(coder).reshape(prior_loc.shape)
        bins.append(chosen)
        centre = grid.centres(chosen, prior_loc, prior_scale)
        q_walk.push(centre), prior_walk.push(centre)
    likelihood = prior_walk.likelihood()
    for channel in reversed(range(images.shape[-1])):  # the decoder pops R first
        codec = _pixels_codec(likelihood, channel, _before(images, channel))
        codec.push(coder, images[..., channel])
    for group in reversed(range(len(bins))):
        grid.prior(bins[group].size, group).push(coder, bins[group])
    return bins


def decode(coder, model, n: int, image_shape, grid) -> np.ndarray:
    """Pops N images uint8 [N, H, W, C] off the ANS stack `coder`, undoing `encode`."""
    prior_walk, bins, priors, centres = model.walk(n=n), [], [], []
    for group, size in enumerate(model.group_sizes()):
        prior_loc, prior_scale = _prior(prior_walk)
        chosen = grid.prior(n * size, group).pop(coder).reshape(n, size)
        centre = grid.centres(chosen, prior_loc, prior_scale)
        prior_walk.push(centre)
        bins.append(chosen), priors.append((prior_loc, prior_scale)), centres.append(centre)
    likelihood = prior_walk.likelihood()
    level = np.zeros([n, *image_shape], np.float32)
    for channel in range(image_shape[-1]):
        symbols = _pixels_codec(likelihood, channel, _before(level, channel)).pop(coder)
        level[..., channel] = symbols.reshape(level.shape[:-1])
    images = level.astype(np.uint8)
    q_walk, posteriors = posterior_walk(model, images), []
    for centre in centres:
        _, _, loc, scale = q_walk.next_normals()
        posteriors.append((loc.numpy(), scale.numpy()))
        q_walk.push(centre)
    for group in reversed(range(len(bins))):
        (prior_loc, prior_scale), (loc, scale) = priors[group], posteriors[group]
        grid.posterior(prior_loc, prior_scale, loc, scale).push(coder, bins[group])
    return images
