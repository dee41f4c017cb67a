"""The checkerboard of a decoder's upsampling: its spectral measure on images, the kernel-tap
overlap of a transposed convolution, and the comparison of several runs' prior samples."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


def checkerboard_energy(images) -> np.ndarray:
    """Share of each image's spectral energy at the Nyquist frequencies, float64 [N].

    The (pi, 0), (0, pi) and (pi, pi) frequencies are where the uneven overlap of a stride-2
    transposed convolution puts its checkerboard. Energy is |FFT|^2 of the channel-mean image
    with its mean removed; 0 for a constant image, 1 for a pure checkerboard.

    Args:
      images: float [N, H, W, C] in [0, 1], H and W even.
    """
    gray = np.asarray(images, np.float64).mean(-1)  # [N, H, W]
    gray = gray - gray.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(gray)) ** 2
    h, w = gray.shape[1] // 2, gray.shape[2] // 2
    nyquist = power[:, h, 0] + power[:, 0, w] + power[:, h, w]
    return nyquist / np.maximum(power.sum(axis=(1, 2)), 1e-20)


def transposed_conv_overlap(kernel_size: int, stride: int = 2, input_size: int = 8) -> np.ndarray:
    """How many kernel taps land on each output pixel of a transposed convolution, int [S, S].

    A stride-2 transposed convolution with kernel 3 covers pixels unevenly (the checkerboard of
    the report's section 2.2); with kernel 4 every interior pixel gets the same count.
    """
    layer = keras.layers.Conv2DTranspose(
        1, kernel_size, strides=stride, padding="same", use_bias=False,
        kernel_initializer="ones",
    )  # fmt: skip
    counts = layer(tf.ones([1, input_size, input_size, 1]))
    return np.rint(counts.numpy()[0, ..., 0]).astype(int)


def upsampling_comparison(
    runs, real_images, num_images: int = 256, seed: int = 0, temperature: float = 1.0,
    draws=None,
) -> dict:  # fmt: skip
    """Samples of each run from the same code draws (or each from its own sampler with one seed),
    and their checkerboard energy.

    Args:
      runs: [(name, config, vae)]; all with the same latent size.
      real_images: float32 [N, H, W, 3] in [0, 1], the reference checkerboard level of data.
      temperature: T of the draws, z = T eps (N(0, T^2 I) for the default prior).
      draws: one `draw(n, seed, temperature)` -> codes [n, Z] per run
        (`samplers.store.code_draws`), each run decoding its own draws of the same seed; default
        the first run's prior draws, decoded by every run.

    Returns:
      {"samples": float32 [runs, num_images, H, W, 3], "checkerboard": {name: (mean, sem)},
       "data_checkerboard": (mean, sem)}.
    """
    latent_dims = {config.latent_dim for _, config, _ in runs}
    if len(latent_dims) != 1:
        raise ValueError(f"The runs have latent sizes {sorted(latent_dims)}; they must match.")
    if not temperature > 0:
        raise ValueError(f"Flag `--temperature` is {temperature}; it must be > 0.")
    if draws is None:  # the first run's prior, through every decoder
        z = runs[0][2].prior.sample(num_images, [seed, 0], temperature)
        codes = [z] * len(runs)
    else:  # a sampler fitted to one run's codes means nothing to another's decoder
        codes = [draw(num_images, [seed, 0], temperature) for draw in draws]
    samples = np.stack(
        [vae.sample(z=z).numpy() for (_, _, vae), z in zip(runs, codes, strict=True)]
    )

    def mean_sem(images):
        energy = checkerboard_energy(images)
        return float(energy.mean()), float(energy.std(ddof=1) / math.sqrt(len(energy)))

    return {
        "samples": samples,
        "checkerboard": {name: mean_sem(s) for (name, _, _), s in zip(runs, samples, strict=True)},
        "data_checkerboard": mean_sem(real_images),
    }
