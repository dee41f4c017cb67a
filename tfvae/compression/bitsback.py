"""Bits-back coding of one batch of images with a model's latent groups (HiLLoC's order).

Encode: top down, pop each group's bucket indices from its posterior q(z_l | x, z_<l) given the
groups above at their bucket centres (`latents`), pushing the centres into the model's walk;
push the pixels under p(x | z), channel by channel; push each group under its prior (uniform
over the buckets: B bits a latent), bottom up. Decode undoes it in reverse: pop the groups top
down under their priors (the centres into a prior-only walk), pop the pixels channel by channel,
then, the images known, rebuild the posteriors and push the indices back, bottom up.

Determinism: every table a decoder needs is computed on both sides by the same calls with the
same inputs and batch shape: priors and pixel probabilities from the prior-only walk
`model.walk(n=N)` fed the bucket centres, posteriors from `model.walk(model.encode(x))` with x the
uint8 pixels / 255 in float32; then float64 numpy (`ans.quantised`, `latents`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfvae.compression import ans, latents
from tfvae.models import likelihoods

_TOP = 255.0


def _pixels_codec(likelihood, channel: int, level) -> ans.Categorical:
    """The codec of one channel of every pixel [N H W] given the channels before it."""
    log_probs = likelihoods.channel_log_probs(likelihood, channel, level).numpy()
    return ans.Categorical(ans.quantised(log_probs.reshape(-1, log_probs.shape[-1])))


def _posterior_walk(model, images):
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


def encode(coder, model, images, bits: int) -> list[np.ndarray]:
    """Pushes uint8 images [N, H, W, C] onto the ANS stack `coder` (see the module doc);
    returns the bucket indices int32 [N, S_l] of each group it coded them with, top down."""
    images = np.asarray(images, np.uint8)
    n = len(images)
    posterior_walk, prior_walk = _posterior_walk(model, images), model.walk(n=n)
    indices = []
    for _ in model.group_sizes():
        prior_loc, prior_scale = _prior(prior_walk)
        _, _, loc, scale = posterior_walk.next_normals()
        codec = latents.posterior_codec(prior_loc, prior_scale, loc.numpy(), scale.numpy(), bits)
        chosen = np.concatenate(codec.pop(coder)).reshape(prior_loc.shape)
        indices.append(chosen)
        centre = latents.centres(chosen, prior_loc, prior_scale, bits)
        posterior_walk.push(centre), prior_walk.push(centre)
    likelihood = prior_walk.likelihood()
    for channel in reversed(range(images.shape[-1])):  # the decoder pops R first
        codec = _pixels_codec(likelihood, channel, _before(images, channel))
        codec.push(coder, images[..., channel])
    for chosen in reversed(indices):
        ans.Uniform(bits, chosen.size).push(coder, chosen)
    return indices


def decode(coder, model, n: int, image_shape, bits: int) -> np.ndarray:
    """Pops N images uint8 [N, H, W, C] off the ANS stack `coder`, undoing `encode`."""
    prior_walk, indices, priors, centres = model.walk(n=n), [], [], []
    for size in model.group_sizes():
        prior_loc, prior_scale = _prior(prior_walk)
        chosen = ans.Uniform(bits, n * size).pop(coder).reshape(n, size)
        centre = latents.centres(chosen, prior_loc, prior_scale, bits)
        prior_walk.push(centre)
        indices.append(chosen), priors.append((prior_loc, prior_scale)), centres.append(centre)
    likelihood = prior_walk.likelihood()
    level = np.zeros([n, *image_shape], np.float32)
    for channel in range(image_shape[-1]):
        symbols = _pixels_codec(likelihood, channel, _before(level, channel)).pop(coder)
        level[..., channel] = symbols.reshape(level.shape[:-1])
    images = level.astype(np.uint8)
    posterior_walk, posteriors = _posterior_walk(model, images), []
    for centre in centres:
        _, _, loc, scale = posterior_walk.next_normals()
        posteriors.append((loc.numpy(), scale.numpy()))
        posterior_walk.push(centre)
    for group in reversed(range(len(indices))):
        (prior_loc, prior_scale), (loc, scale) = priors[group], posteriors[group]
        codec = latents.posterior_codec(prior_loc, prior_scale, loc, scale, bits)
        codec.push(coder, latents.split(indices[group], bits))
    return images
