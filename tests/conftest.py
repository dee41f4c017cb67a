"""Test setup: two logical CPUs (for MirroredStrategy tests), quiet TF, tiny configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from tfvae import config as config_lib  # noqa: E402


@pytest.fixture
def tiny_config(tmp_path):
    """A 16x16 model with a few hundred built-in images, cached under tmp_path's parent."""
    return config_lib.Config(
        dataset="builtin",
        data_dir=str(tmp_path.parent / "tfvae-data"),
        image_size=16,
        train_size=64,
        val_size=32,
        width=8,
        latent_dim=4,
        k=3,
        batch_size=16,
        epochs=2,
        learning_rate=1e-3,
        beta_1=0.9,
        log_every_steps=2,
    )


@pytest.fixture(scope="session")
def two_cpus():
    """One MirroredStrategy over the two logical CPUs, shared by all tests: strategies made
    separately in one process reuse collective instance keys and clash."""
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    )
