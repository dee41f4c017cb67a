"""Image grids and figures made from model outputs."""

from __future__ import annotations

import tensorflow as tf


def image_grid(images: tf.Tensor, columns: int) -> tf.Tensor:
    """Tiles images into one picture.

    Args:
      images: float [N, H, W, C] in [0, 1]; N a multiple of `columns`.
      columns: images per row.

    Returns:
      float32 [1, (N / columns) H, columns W, C] in [0, 1], for tf.summary.image.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    n, h, w, c = images.shape
    rows = n // columns
    grid = tf.reshape(images[: rows * columns], [rows, columns, h, w, c])
    grid = tf.transpose(grid, [0, 2, 1, 3, 4])  # [rows, H, columns, W, C]
    return tf.reshape(grid, [1, rows * h, columns * w, c])
