"""Datasets as `tf.data` of {"image": uint8 [H, W, 3], "labels"?: float32 [L]}.

`load` is the one entry point for every source; `preprocess` is the one crop-and-resize applied
to all of them; `batches` is the one training/evaluation input pipeline; `to_unit_interval` is
the one conversion to the model's float32 [0, 1] pixels.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfvae.data import builtin

SPLITS = ("train", "validation", "test")
PIXEL_LEVELS = 256  # 8-bit channels: uint8 values 0..255


def default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "tfvae")


def preprocess(image: tf.Tensor, image_size: int, crop_box=None) -> tf.Tensor:
    """Crops then resizes one image with antialiasing.

    Args:
      image: uint8 [H, W, 3] in [0, 255].
      image_size: side of the square output, pixels.
      crop_box: (offset_y, offset_x, height, width) or None for the whole image.

    Returns:
      uint8 [image_size, image_size, 3] in [0, 255].
    """
    if crop_box is not None:
        image = tf.image.crop_to_bounding_box(image, *crop_box)
    if image.shape[0] == image_size and image.shape[1] == image_size:
        return image
    resized = tf.image.resize(image, [image_size, image_size], method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def load(
    name: str, split: str, data_dir: str = "", image_size: int = 64, size: int = 0
) -> tf.data.Dataset:
    """Loads one split of a dataset, preprocessed to `image_size`.

    Args:
      name: 'builtin', 'celeb_a' or 'folder:PATH'.
      split: 'train', 'validation' or 'test'.
      data_dir: where datasets are cached or found ('' = ~/.cache/tfvae).
      image_size: output side in pixels.
      size: number of examples, a deterministic subset (the first `size`); 0 = all.

    Returns:
      A finite tf.data.Dataset of {"image": uint8 [S, S, 3], "labels": float32 [L]}.
    """
    if split not in SPLITS:
        raise ValueError(f"Split {split!r} is unknown; accepted: {', '.join(SPLITS)}.")
    data_dir = data_dir or default_data_dir()
    if name == "builtin":
        images, labels = builtin.load_arrays(split, data_dir)
    elif name == "celeb_a" or name.startswith("folder:"):
        raise NotImplementedError(
            f"Dataset {name!r} is not available in this version of tfvae; "
            "use --dataset=builtin (CelebA and image folders are planned)."
        )
    else:
        raise ValueError(f"Dataset {name!r} is unknown; accepted: builtin, celeb_a, folder:PATH.")
    if size:
        if size > len(images):
            raise ValueError(
                f"Asked for {size} examples of {name}/{split}, which has only {len(images)}."
            )
        images, labels = images[:size], labels[:size]
    dataset = tf.data.Dataset.from_tensor_slices({"image": images, "labels": labels})
    return dataset.map(
        lambda ex: {**ex, "image": preprocess(ex["image"], image_size)},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def batches(
    dataset: tf.data.Dataset,
    batch_size: int,
    shuffle_seed: int | None = None,
    skip_batches: int = 0,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """One pass over `dataset` in batches, optionally shuffled and resumed mid-epoch.

    Args:
      dataset: examples from `load`.
      batch_size: global batch size.
      shuffle_seed: None for file order; else a seeded full shuffle (one seed per epoch gives
        a reproducible order that a resumed run can replay).
      skip_batches: batches to skip at the start (the data position of a resumed epoch).
      drop_remainder: drop a last partial batch (training: fixed shapes, one trace).
    """
    dataset = dataset.cache()
    if shuffle_seed is not None:
        count = int(dataset.cardinality())
        dataset = dataset.shuffle(max(count, 1), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).skip(skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def to_unit_interval(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [0, 1] (x / 255), the model's input convention."""
    return tf.cast(image, tf.float32) / float(PIXEL_LEVELS - 1)
