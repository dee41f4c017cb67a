"""CelebA: its crops, its metadata files, and TensorFlow Datasets' `celeb_a` builder.

Aligned CelebA images are 178 wide and 218 high. Crop boxes are (offset_y, offset_x, height,
width) of that image:
- 'realnvp': the 148x148 box at x=15, y=40, used by Real NVP (Dinh et al. 2017) and NVAE
  (Vahdat & Kautz 2020), so bits/dim here can be set beside their CelebA-64 numbers;
- 'center': the centred 148x148 box (x=15, y=35), torchvision's CenterCrop(148) as in
  PyTorch-VAE;
- 'none': the whole image (squashed to a square by the resize).
"""

from __future__ import annotations

import os
import socket

import numpy as np
import tensorflow as tf

CROP_BOXES = {"realnvp": (40, 15, 148, 148), "center": (35, 15, 148, 148), "none": None}
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
PARTITION_FILE = "list_eval_partition.txt"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
DOWNLOAD_HOST = "drive.google.com"  # where TFDS's celeb_a builder downloads from
TFDS_FILES = (
    "img_align_celeba.zip",
    PARTITION_FILE,
    ATTRIBUTES_FILE,
    "list_landmarks_align_celeba.txt",
    "identity_CelebA.txt",
)
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def read_partition(path: str) -> dict[str, int]:
    """list_eval_partition.txt -> {file name: 0 train, 1 validation, 2 test}."""
    with open(path) as f:
        rows = (line.split() for line in f if line.strip())
        return {row[0]: int(row[1]) for row in rows}


def read_attributes(path: str) -> dict[str, np.ndarray]:
    """list_attr_celeba.txt -> {file name: float32 [40] in {0, 1}, in ATTRIBUTE_NAMES order}."""
    with open(path) as f:
        lines = f.read().splitlines()
    names = lines[1].split()
    order = [names.index(name) for name in ATTRIBUTE_NAMES]
    table = {}
    for line in lines[2:]:
        row = line.split()
        if row:
            values = np.asarray(row[1:], np.float32)[order]
            table[row[0]] = (values > 0).astype(np.float32)
    return table


def tfds_examples(split: str, data_dir: str) -> tf.data.Dataset:
    """CelebA through TFDS's `celeb_a` builder: {"image": uint8 [218,178,3], "labels": [40]}.

    Prepares the dataset if needed; when the files are absent and cannot be downloaded (the
    download is often refused by its host's quota), raises one ValueError line saying which
    files to fetch, where TFDS looks for them, and the folder alternative.
    """
    import tensorflow_datasets as tfds

    tfds_dir = os.path.join(data_dir, "tensorflow_datasets")
    manual_dir = os.path.join(tfds_dir, "downloads", "manual")
    builder = tfds.builder("celeb_a", data_dir=tfds_dir)
    have_files = all(os.path.exists(os.path.join(manual_dir, f)) for f in TFDS_FILES)
    try:
        if not (builder.is_prepared() or have_files or download_host_reachable()):
            raise ConnectionError(f"{DOWNLOAD_HOST} is unreachable")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except Exception as error:  # offline, quota pages (NonMatchingChecksumError), bad files
        raise ValueError(
            f"CelebA is not prepared in {tfds_dir} and could not be downloaded "
            f"({type(error).__name__}: {str(error).splitlines()[0][:120]}). Fetch "
            f"{', '.join(TFDS_FILES)} from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
            f"(Aligned&Cropped) into {manual_dir} and rerun, or pass "
            f"--dataset=folder:PATH/img_align_celeba.zip with {PARTITION_FILE} and "
            f"{ATTRIBUTES_FILE} beside it."
        ) from None

    def to_example(example):
        attributes = [tf.cast(example["attributes"][name], tf.float32) for name in ATTRIBUTE_NAMES]
        return {"image": example["image"], "labels": tf.stack(attributes)}

    return builder.as_dataset(split=split, shuffle_files=False).map(
        to_example, num_parallel_calls=tf.data.AUTOTUNE
    )


def download_host_reachable(timeout_seconds: float = 5.0) -> bool:
    """Whether TFDS's download host answers within a few seconds (so offline never hangs)."""
    try:
        socket.create_connection((DOWNLOAD_HOST, 443), timeout=timeout_seconds).close()
        return True
    except OSError:
        return False
