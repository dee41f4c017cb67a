"""Test setup: two logical CPUs (for MirroredStrategy tests), quiet TF, tiny configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from tests.factory import tiny_config_for  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Where every test's built-in faces are cached (made once per session)."""
    return tmp_path_factory.getbasetemp() / "tfvae-data"


@pytest.fixture
def tiny_config(data_dir):
    """A 16x16 model of four steps per epoch, two epochs."""
    return tiny_config_for(
        data_dir, width=8, latent_dim=4, k=3, train_size=64, val_size=32, epochs=2,
        beta_1=0.9, log_every_steps=2,
    )  # fmt: skip


@pytest.fixture(scope="session")
def two_cpus():
    """One MirroredStrategy over the two logical CPUs, shared by all tests: strategies made
    separately in one process reuse collective instance keys and clash."""
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    )
