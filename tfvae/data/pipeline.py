"""Loading, caching and batching: every source as one `tf.data` of uint8 images.

`load` is the one entry point for every source; `preprocess` is the one crop-and-resize applied
to all of them; `batches` is the one training/evaluation input pipeline; `to_unit_interval` is
the one conversion to the model's float32 [0, 1] pixels.

Real images (CelebA through TFDS, a folder or a zip) are decoded, cropped and resized once, in
parallel, into uint8 arrays cached as .npz under the data directory (10,000 images at 64x64 are
123 MB); every later epoch and run reads them from memory, so training never waits on decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import tensorflow as tf

from tfvae.data import builtin, celeba, folder
from tfvae.runtime import files, renames

SPLITS = ("train", "validation", "test")
PIXEL_LEVELS = 256  # 8-bit channels: uint8 values 0..255


def default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "tfvae")


def preprocess(image: tf.Tensor, image_size: int, crop_box=None) -> tf.Tensor:
    """Crops then resizes an image (or a batch of images) with antialiasing.

    Args:
      image: uint8 [H, W, 3] or [N, H, W, 3] in [0, 255].
      image_size: side of the square output, pixels.
      crop_box: (offset_y, offset_x, height, width) or None for the whole image.

    Returns:
      uint8 [..., image_size, image_size, 3] in [0, 255].
    """
    if crop_box is not None:
        image = tf.image.crop_to_bounding_box(image, *crop_box)
    if image.shape[-3] == image_size and image.shape[-2] == image_size:
        return image
    resized = tf.image.resize(image, [image_size, image_size], method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def load(
    name: str,
    split: str,
    data_dir: str = "",
    image_size: int = 64,
    num_images: int = 0,
    crop: str = "realnvp",
    seed: int = 0,
    at_most: bool = False,
    size: int | None = None,
) -> tf.data.Dataset:
    """Loads one split of a dataset, preprocessed to `image_size`.

    Args:
      name: 'builtin', 'celeb_a' (TFDS) or 'folder:PATH' (a directory or a .zip of images).
      split: 'train', 'validation' or 'test'.
      data_dir: where datasets are cached or found ('' = ~/.cache/tfvae).
      image_size: output side in pixels.
      num_images: a deterministic subset, the first `num_images`; 0 = all (`size=`: its
        deprecated name).
      crop: CelebA crop before resizing, a key of celeba.CROP_BOXES (not used by builtin).
      seed: seeds the train/validation/test split of a folder without a partition file.
      at_most: a split smaller than `num_images` gives all its images instead of an error (what the
        tools do on a small folder; training refuses, so its subset is what was asked for).

    Returns:
      A finite tf.data.Dataset of {"image": uint8 [S, S, 3], "labels": float32 [L]}.
    """
    size = renames.renamed_argument("size", size, "num_images", num_images, 0)
    if split not in SPLITS:
        raise ValueError(f"Split {split!r} is unknown; accepted: {', '.join(SPLITS)}.")
    if crop not in celeba.CROP_BOXES:
        raise ValueError(f"Crop {crop!r} is unknown; accepted: {', '.join(celeba.CROP_BOXES)}.")
    data_dir = data_dir or default_data_dir()
    if name == "builtin":
        available = builtin.SPLIT_SIZES.get(split, 0)
        if size > available and not at_most:
            raise ValueError(
                f"Asked for {size} examples of {name}/{split}, which has only {available}."
            )
        images, labels = builtin.load_arrays(split, data_dir, size)  # only the blocks needed
        images = np.concatenate(  # resized once, in chunks, like the real-image arrays
            [
                np.asarray(preprocess(images[i : i + 1000], image_size))
                for i in range(0, len(images), 1000)
            ]
        )
        return tf.data.Dataset.from_tensor_slices({"image": images, "labels": labels})
    if name != "celeb_a" and not name.startswith("folder:"):
        raise ValueError(f"Dataset {name!r} is unknown; accepted: builtin, celeb_a, folder:PATH.")
    arrays = _prepared(name, split, data_dir, image_size, size, crop, seed, at_most)
    return tf.data.Dataset.from_tensor_slices(arrays)


def load_config_split(
    config, split: str, num_images: int, at_most: bool = False
) -> tf.data.Dataset:
    """`load` with the data fields of a tfvae Config: its dataset, data_dir, image size, crop
    and seed; the first `num_images` (0 = all)."""
    return load(
        config.dataset, split, config.data_dir, config.image_size, num_images, config.crop,
        config.seed, at_most,
    )  # fmt: skip


def _prepared(name, split, data_dir, image_size, size, crop, seed, at_most=False) -> dict:
    """Decoded, cropped, resized arrays of a real-image split, cached as .npz by their recipe."""
    recipe = [name, _source_stamp(name), split, image_size, size, crop, seed, "v1"]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:20]
    path = os.path.join(data_dir, "prepared", f"{key}.npz")
    if os.path.exists(path):
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    crop_box = celeba.CROP_BOXES[crop]
    if name == "celeb_a":
        examples = celeba.tfds_examples(split, data_dir).map(
            lambda ex: {**ex, "name": tf.constant("")}
        )
        names, labels, total = None, None, None
    else:
        source = name[len("folder:") :]
        names, labels, archive = folder.split_files(source, split, seed)
        total = len(names)
        examples = folder.encoded_examples(source, names, archive).map(
            lambda ex: {"name": ex["name"], "image": folder.decode(ex["bytes"])}
        )
    examples = examples.map(
        lambda ex: {**ex, "image": preprocess(ex["image"], image_size, crop_box)},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).ignore_errors()  # unreadable files and images smaller than the crop; counted below
    arrays = _materialize(examples.take(size) if size else examples, total or size, name)
    read_names = arrays.pop("name")
    if names is not None:  # a folder: labels by file, and a word on the files skipped
        position = {n: i for i, n in enumerate(names)}
        index = np.array([position[n.decode()] for n in read_names], np.int64)
        attempted = len(names) if not size or len(index) < size else int(index.max()) + 1
        _report_skipped(names[:attempted], index, name)
        no_labels = np.zeros([len(index), 0], np.float32)
        arrays["labels"] = labels[index] if labels is not None else no_labels
    count = len(arrays["image"])
    if (size and count < size and not at_most) or count == 0:
        raise ValueError(
            f"Asked for {size or 'some'} {split} images of {name}; only {count} could be read."
        )
    files.write_atomically(path, lambda f: np.savez(f, **arrays))
    return arrays


def _source_stamp(name: str) -> list:
    """Size and modification time of a folder source and its metadata: a stale cache misses."""
    if not name.startswith("folder:"):
        return []
    source = name[len("folder:") :]
    paths = [source] + [
        os.path.join(directory, f)
        for directory in (os.path.dirname(os.path.abspath(source)), source)  # beside, inside
        for f in (celeba.PARTITION_FILE, celeba.ATTRIBUTES_FILE)
    ]
    stamp = [os.path.abspath(source)]
    for p in paths:
        if os.path.exists(p):
            info = os.stat(p)
            stamp += [info.st_size, info.st_mtime_ns]
    if os.path.isdir(source):
        stamp.append(len(os.listdir(source)))
    return stamp


def _materialize(examples: tf.data.Dataset, total, name) -> dict:
    """Reads the whole pipeline into numpy arrays with a progress bar (images/s)."""
    from tqdm import tqdm

    parts = {}
    with tqdm(total=total or None, unit="img", desc=f"preparing {name}", file=sys.stderr) as bar:
        for batch in examples.batch(256):
            for key, value in batch.items():
                parts.setdefault(key, []).append(value.numpy())
            bar.update(len(batch["image"]))
    if not parts:
        return {"image": np.zeros([0, 1, 1, 3], np.uint8), "name": np.zeros([0], object)}
    return {key: np.concatenate(values) for key, values in parts.items()}


def _report_skipped(attempted, read_index, source) -> None:
    """One warning line: how many of the attempted files could not be used, and which."""
    read = set(read_index.tolist())
    skipped = [n for i, n in enumerate(attempted) if i not in read]
    if skipped:
        shown = ", ".join(os.path.basename(n) for n in skipped[:5])
        more = ", ..." if len(skipped) > 5 else ""
        print(
            f"warning: {source}: skipped {len(skipped)} of {len(attempted)} files that are not "
            f"readable images at least as large as the crop: {shown}{more}",
            file=sys.stderr,
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
    if shuffle_seed is not None:
        count = int(dataset.cardinality())
        dataset = dataset.shuffle(max(count, 1), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).skip(skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def to_unit_interval(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [0, 1] (x / 255), the model's input convention."""
    return tf.cast(image, tf.float32) / float(PIXEL_LEVELS - 1)
