"""Test setup: two logical CPUs (for MirroredStrategy tests), quiet TF, tiny configs."""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One test process per core (`-n auto`): one op thread each, for it and the processes it
    # starts, instead of every process's thread pools spinning over all the cores.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (setup.cfg): one test process per core, at most four (each holds a TF)."""
    del config
    return max(1, min(4, len(os.sched_getaffinity(0))))


# Started first, so that the longest modules do not end the run alone (speed only).
_LONGEST_FIRST = ("test_export", "test_distributed", "test_tuning", "test_cli", "test_reproduce")


def pytest_collection_modifyitems(config, items):
    """The slowest modules first; otherwise collection order."""
    del config

    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable


@functools.cache
def _has_module_fixture(path: str) -> bool:
    with open(path) as f:
        return 'scope="module"' in f.read()


def pytest_xdist_make_scheduler(config, log):
    """`-n auto` (setup.cfg): each test is its own unit of work, except that a module with a
    module-scoped fixture (a trained run, an export) goes to one test process as a whole, so the
    fixture is built once."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            full = os.path.join(str(config.rootpath), path)
            return path if os.path.exists(full) and _has_module_fixture(full) else nodeid

    config.option.loadscopereorder = False  # keep the order above
    return Scheduling(config, log)
