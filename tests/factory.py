"""The one factory of test configs (conftest's fixtures and the test modules use it)."""

from tfvae import config as config_lib

TINY = dict(  # a 16x16 run of two steps per epoch on the built-in faces: seconds on a CPU
    dataset="builtin", image_size=16, width=4, latent_dim=3, k=2, batch_size=16,
    train_size=32, val_size=16, epochs=1, learning_rate=1e-3,
)  # fmt: skip


def tiny_config_for(data_dir, **changes) -> config_lib.Config:
    """The one factory of test configs: TINY with `changes`, its data cached in `data_dir`."""
    return config_lib.Config(**{**TINY, "data_dir": str(data_dir), **changes})
