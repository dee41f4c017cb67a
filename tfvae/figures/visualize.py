"""Interpolations, traversals, and image-grid figures (PNG, JSON and TensorBoard).

Images are float32 in [0, 1]; every grid of decoded images comes from one batched decode.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from tfvae.runtime import files
from tfvae.training.outputs import image_grid

ALPHAS = tuple(i / 10 for i in range(11))  # the report's alpha in {0, 0.1, ..., 1}


def latent_interpolation(model, z0, z1, alphas=ALPHAS, spherical: bool = False) -> tf.Tensor:
    """Decodes z' = alpha z0 + (1 - alpha) z1 (the report's convention), one batched call.

    Args:
      model: a VAE; z0, z1: float32 [Z]; alphas: [A] floats in [0, 1].
      spherical: interpolate along the great circle (slerp) instead of the straight line.

    Returns:
      float32 [A, H, W, C] in [0, 1]: alpha = 1 gives decode(z0), alpha = 0 decode(z1).
    """
    z0, z1 = tf.convert_to_tensor(z0, tf.float32), tf.convert_to_tensor(z1, tf.float32)
    alphas = tf.constant(alphas, tf.float32)[:, None]  # [A, 1]
    if spherical:
        cosine = tf.reduce_sum(z0 * z1) / (tf.norm(z0) * tf.norm(z1))
        angle = tf.acos(tf.clip_by_value(cosine, -1.0, 1.0))
        sine = tf.maximum(tf.sin(angle), 1e-6)
        z = (tf.sin(alphas * angle) * z0 + tf.sin((1 - alphas) * angle) * z1) / sine
    else:
        z = alphas * z0 + (1 - alphas) * z1  # [A, Z]
    return model.sample(z=z)


def pixel_interpolation(x0, x1, alphas=ALPHAS) -> tf.Tensor:
    """x' = alpha x0 + (1 - alpha) x1: x0, x1 float32 [H, W, C] -> [A, H, W, C] in [0, 1]."""
    alphas = tf.constant(alphas, tf.float32)[:, None, None, None]
    return alphas * tf.convert_to_tensor(x0, tf.float32) + (1 - alphas) * x1


def traversal_latents(z_center, dims, values) -> tf.Tensor:
    """Latents varying one coordinate at a time: [len(dims), len(values), Z].

    Row r sets coordinate dims[r] of z_center [Z] to each of `values`; all others stay fixed.
    """
    z_center = tf.convert_to_tensor(z_center, tf.float32)
    rows = []
    for dim in dims:
        grid = tf.tile(z_center[None], [len(values), 1])  # [V, Z]
        index = tf.stack([tf.range(len(values)), tf.fill([len(values)], dim)], axis=1)
        rows.append(tf.tensor_scatter_nd_update(grid, index, tf.constant(values, tf.float32)))
    return tf.stack(rows)


def traversal(model, z_center, dims, values) -> tf.Tensor:
    """Decoded traversal grid, float32 [len(dims), len(values), H, W, C], one batched call."""
    z = traversal_latents(z_center, dims, values)
    rows, columns = z.shape[0], z.shape[1]
    images = model.sample(z=tf.reshape(z, [rows * columns, -1]))
    return tf.reshape(images, [rows, columns, *images.shape[1:]])


def grid_figure(images, path: str, title: str, row_labels=(), column_labels=(), zoom=None):
    """Saves a labelled grid of images [R, C, H, W, 3] in [0, 1] as a PNG (matplotlib).

    `zoom` = (y, x, size) adds, under the grid, the same crop of every image enlarged.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.clip(np.asarray(images, np.float32), 0, 1)
    rows, columns = images.shape[:2]
    crops = rows if zoom else 0
    fig, axes = plt.subplots(
        rows + crops, columns, figsize=(1.3 * columns + 2.2, 1.3 * (rows + crops) + 0.8),
        squeeze=False,
    )  # fmt: skip
    for r in range(rows + crops):
        for c in range(columns):
            image = images[r % rows, c]
            if r >= rows:
                y, x, size = zoom
                image = image[y : y + size, x : x + size]
            axes[r, c].imshow(image, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0 and c < len(column_labels):
                axes[r, c].set_title(str(column_labels[c]), fontsize=8)
            if c == 0 and r % rows < len(row_labels):
                label = str(row_labels[r % rows])  # horizontal: long labels never overlap
                label = label.split("\n")[0] + "\n(zoomed crop)" if r >= rows else label
                axes[r, c].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def save_outputs(directory: str, name: str, numbers: dict, grid=None, **figure_args) -> str:
    """Writes NAME.json (the numbers) and, for a grid [R, C, H, W, 3], NAME.png and the same
    image to TensorBoard (event files in `directory`). Returns the PNG or JSON path."""
    import json

    text = json.dumps(numbers, indent=2, default=lambda v: np.asarray(v).tolist())
    files.write_atomically(os.path.join(directory, f"{name}.json"), text)
    if grid is None:
        return os.path.join(directory, f"{name}.json")
    path = os.path.join(directory, f"{name}.png")
    grid_figure(grid, path, **figure_args)
    rows, columns = np.shape(grid)[:2]
    flat = tf.reshape(
        tf.constant(np.asarray(grid, np.float32)), [rows * columns, *np.shape(grid)[2:]]
    )
    with tf.summary.create_file_writer(directory).as_default(step=0):
        tf.summary.image(name, image_grid(flat, columns))
    return path


def log_png(directory: str, name: str, png_path: str) -> None:
    """Writes a saved PNG figure to TensorBoard (event files in `directory`) as image `name`."""
    image = tf.io.decode_png(tf.io.read_file(png_path), channels=3)
    with tf.summary.create_file_writer(directory).as_default(step=0):
        tf.summary.image(name, image[None])
