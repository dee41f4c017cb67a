"""Datasets as `tf.data` of {"image": uint8 [H, W, 3], "labels"?: float32 [L]}.

The sources (`builtin`, `celeba`, `folder`) feed one pipeline (`pipeline`): `load` a split,
`batches` for training and evaluation, `to_unit_interval` to the model's float32 [0, 1] pixels.
"""

from tfvae.data.pipeline import (
    PIXEL_LEVELS,
    SPLITS,
    batches,
    default_data_dir,
    load,
    load_config_split,
    preprocess,
    to_unit_interval,
)

__all__ = [
    "PIXEL_LEVELS",
    "SPLITS",
    "batches",
    "default_data_dir",
    "load",
    "load_config_split",
    "preprocess",
    "to_unit_interval",
]
