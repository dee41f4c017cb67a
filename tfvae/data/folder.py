"""Images from a directory or a zip (CelebA's img_align_celeba/ or img_align_celeba.zip).

A zip is read in place, never extracted. When CelebA's list_eval_partition.txt sits inside (or
else beside) the folder, its official split is used, and list_attr_celeba.txt gives the 40
attributes as labels; otherwise each file goes to train/validation/test (80/10/10%) by a seeded
hash of its name, the same on every machine.
"""

from __future__ import annotations

import hashlib
import os
import zipfile

import numpy as np
import tensorflow as tf

from tfvae.data import celeba

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_HASH_SPLIT = (("train", 0.8), ("validation", 0.9), ("test", 1.0))


def _list_images(path: str) -> tuple[list[str], zipfile.ZipFile | None]:
    """Sorted image member names (base names must be unique) and the open zip, if any."""
    if os.path.isdir(path):
        names = [n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)]
        archive = None
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if n.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        raise ValueError(f"--dataset=folder:{path}: no such directory or zip file.")
    if not names:
        raise ValueError(
            f"--dataset=folder:{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return sorted(names, key=os.path.basename), archive


def _beside(path: str, file_name: str) -> str | None:
    """file_name inside the folder, or else next to the folder or zip (the folder's own file
    wins: a folder of patches built beside a CelebA folder keeps its own split)."""
    for directory in (path, os.path.dirname(os.path.abspath(path))):
        candidate = os.path.join(directory, file_name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _hash_split(name: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return next(split for split, upper in _HASH_SPLIT if fraction < upper)


def split_files(path: str, split: str, seed: int = 0):
    """The files of one split: (member names, labels float32 [N, L] or None, zip or None)."""
    names, archive = _list_images(path)
    partition_path = _beside(path, celeba.PARTITION_FILE)
    if partition_path:
        partition = celeba.read_partition(partition_path)
        wanted = celeba.SPLIT_IDS[split]
        names = [n for n in names if partition.get(os.path.basename(n)) == wanted]
    else:
        names = [n for n in names if _hash_split(os.path.basename(n), seed) == split]
    attributes_path = None  # beside the partition file that was read, not another one
    if partition_path:
        candidate = os.path.join(os.path.dirname(partition_path), celeba.ATTRIBUTES_FILE)
        attributes_path = candidate if os.path.isfile(candidate) else None
    labels = None
    if attributes_path:
        table = celeba.read_attributes(attributes_path)
        missing = np.zeros(len(celeba.ATTRIBUTE_NAMES), np.float32)
        labels = np.stack([table.get(os.path.basename(n), missing) for n in names])
    return names, labels, archive


def encoded_examples(path: str, names, archive) -> tf.data.Dataset:
    """{"name": string, "bytes": string} of each file, read from the folder or the zip."""
    if archive is None:
        files = [os.path.join(path, n) for n in names]
        return tf.data.Dataset.from_tensor_slices({"name": names, "path": files}).map(
            lambda ex: {"name": ex["name"], "bytes": tf.io.read_file(ex["path"])},
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def members():
        for name in names:
            yield {"name": name, "bytes": archive.read(name)}

    spec = {"name": tf.TensorSpec([], tf.string), "bytes": tf.TensorSpec([], tf.string)}
    return tf.data.Dataset.from_generator(members, output_signature=spec)


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Image file bytes -> uint8 [H, W, 3]: gray is repeated, alpha dropped (TFDS's decoder)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])
