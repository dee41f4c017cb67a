"""Several workers: MultiWorkerMirroredStrategy over real CLI processes, and replica layouts.

The multi-process tests start worker subprocesses of `python -m tfvae.train` and
`tools/bpp.py` with TF_CONFIG on loopback ports (tfvae.testing: a private network
namespace where possible, hard timeouts, every process killed and reaped at the end).
"""

import glob
import json
import os
import signal
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.factory import scalar_events, tiny_config_for
from tfvae import config as config_lib
from tfvae import data
from tfvae.evaluation import split
from tfvae.models import vae as model
from tfvae.runtime import files, stopping
from tfvae.testing import LocalCluster
from tfvae.training import train
from tfvae.training.steps import Steps

TIMEOUT_S = 240  # per cluster launch: two TF processes start in ~10-20 s each on 2 busy cores


def _config(tmp_path, **changes):
    settings = dict(
        train_size=64, val_size=24, epochs=2, log_every_steps=1, collective_timeout_s=20
    )
    return tiny_config_for(tmp_path.parent / "tfvae-data", **{**settings, **changes})


def _flags(config, model_dir):
    return config_lib.to_flags(config, {"model_dir": model_dir})


def _train_command(config, model_dir):
    return [sys.executable, "-m", "tfvae.train", *_flags(config, model_dir)]


def _wait_for(path, cluster, timeout_s=TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared:\n{cluster.output(0)[-3000:]}"
        assert all(p.poll() is None for p in cluster.processes), cluster.output(0)[-3000:]
        time.sleep(0.2)


def _last_scalar(model_dir, split, tag):
    """The last value of a scalar in the chief's events (float32, as written)."""
    return scalar_events(model_dir, split)[tag][-1][1]


@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory):
    """Two workers: SIGTERM to worker 1 mid-run, then the same command again to the end."""
    tmp_path = tmp_path_factory.mktemp("two_workers")
    config = _config(tmp_path)
    model_dir = str(tmp_path / "run")
    command = _train_command(config, model_dir)
    with LocalCluster([command, command]) as cluster:
        _wait_for(os.path.join(model_dir, "train"), cluster)  # the chief's writer: set up
        cluster.signal(1, signal.SIGTERM)
        stopped = cluster.wait(TIMEOUT_S), [cluster.output(i) for i in range(2)]
    with LocalCluster([command, command]) as cluster:
        resumed = cluster.wait(TIMEOUT_S), [cluster.output(i) for i in range(2)]
    return config, model_dir, stopped, resumed


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _saved_step(output):
    return int(output.split("checkpoint saved at step ")[1].split(";")[0])


@pytest.mark.multiprocess
def test_sigterm_to_one_worker_stops_both_at_one_step(stopped_and_resumed):
    config, model_dir, (codes, outputs), _ = stopped_and_resumed
    assert codes == [stopping.EXIT_STOPPED] * 2, outputs[0][-3000:]
    assert "SIGTERM: checkpoint saved at step" in outputs[1]
    assert "another worker's signal: checkpoint saved at step" in outputs[0]
    step = _saved_step(outputs[0])
    assert step == _saved_step(outputs[1]) and 1 <= step < 8  # 8 = 2 epochs of 4 steps
    assert os.path.exists(os.path.join(model_dir, f"ckpt-{step}.index"))


@pytest.mark.multiprocess
def test_resumed_two_workers_equal_one_process_and_only_the_chief_wrote(
    stopped_and_resumed, tmp_path
):
    config, model_dir, _, (codes, outputs) = stopped_and_resumed
    assert codes == [0, 0], outputs[0][-3000:]
    single_dir = str(tmp_path / "single")
    metrics = train.train_and_evaluate(config, single_dir)  # one process, uninterrupted
    # Same global batches in the same order: equal to float32 round-off (the all-reduce adds
    # the two workers' halves in another order than one device sums the batch).
    assert _last_scalar(model_dir, "validation", "bound") == pytest.approx(metrics["bound"], 1e-5)
    two, one = tf.train.load_checkpoint(model_dir), tf.train.load_checkpoint(single_dir)
    names = [n for n in one.get_variable_to_shape_map() if "model/" in n or "optimizer/" in n]
    assert len(names) > 20
    for name in names:
        expected = one.get_tensor(name)  # round-off relative to the tensor's scale
        atol = 1e-5 * np.abs(expected).max()
        np.testing.assert_allclose(two.get_tensor(name), expected, 1e-3, atol, err_msg=name)
    # Only the chief wrote: one events file per split and run (two runs), its checkpoints.
    for subdir in ("train", "validation"):
        assert len(glob.glob(os.path.join(model_dir, subdir, "events.out.tfevents.*"))) == 2
    names = sorted(n for n in os.listdir(model_dir) if n != files.LOCK_FILE)  # the chief's lock
    assert {n.split(".")[0] for n in names} == {"checkpoint", "config", "train", "validation"} | {
        n.split(".")[0] for n in names if n.startswith("ckpt-")
    }
    assert "ckpt-8.index" in names
    assert "writing nothing to model_dir" in outputs[1]


@pytest.mark.multiprocess
def test_factor_vae_on_two_workers_equals_one_process(tmp_path):
    # The penalties gather the other worker's codes; the discriminator's Adam all-reduces.
    config = _config(tmp_path, objective="factor_vae", discriminator_units=8, epochs=1)
    model_dir, single_dir = str(tmp_path / "run"), str(tmp_path / "single")
    command = _train_command(config, model_dir)
    with LocalCluster([command, command]) as cluster:
        codes = cluster.wait(TIMEOUT_S)
        assert codes == [0, 0], cluster.output(0)[-3000:]
    train.train_and_evaluate(config, single_dir)
    two, one = tf.train.load_checkpoint(model_dir), tf.train.load_checkpoint(single_dir)
    names = [n for n in one.get_variable_to_shape_map() if "discriminator" in n]
    assert len(names) > 20  # its weights, its optimizer's moments
    names += [n for n in one.get_variable_to_shape_map() if "model/" in n]
    for name in names:
        expected = one.get_tensor(name)
        atol = 1e-5 * np.abs(expected).max()
        np.testing.assert_allclose(two.get_tensor(name), expected, 1e-3, atol, err_msg=name)


@pytest.mark.multiprocess
def test_bpp_on_two_workers_equals_one_process(stopped_and_resumed):
    config, model_dir, _, _ = stopped_and_resumed
    args = ["--k=6", "--num_images=7", "--eval_batch_size=2", "--chunk_size=4", "--seed=3"]
    command = [sys.executable, "tools/bpp.py", f"--model_dir={model_dir}", *args]
    with LocalCluster([command, command]) as cluster:
        codes = cluster.wait(TIMEOUT_S)
        assert codes == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
    metrics = _read_json(os.path.join(model_dir, "metrics.json"))
    _, vae, _ = model.restore(model_dir)
    one = split.evaluate_split(config, vae, "validation", 6, 7, 2, 4, 3)
    assert metrics["num_images"] == 7  # 7 examples over 2 workers x 2: the last batch padded
    assert metrics["nll_nats"] == pytest.approx(-one["log_likelihood"].mean(), rel=1e-6)
    assert metrics["elbo_nats"] == pytest.approx(one["elbo"].mean(), rel=1e-6)


@pytest.mark.multiprocess
def test_a_killed_worker_stops_the_other_within_the_timeout(tmp_path):
    # 10 s: only the first step runs before the kill, so no healthy collective waits that long.
    config = _config(tmp_path, epochs=1000, collective_timeout_s=10)
    model_dir = str(tmp_path / "run")
    command = _train_command(config, model_dir)
    with LocalCluster([command, command]) as cluster:
        deadline = time.monotonic() + TIMEOUT_S
        while "img_s=" not in cluster.output(0):  # the first step (and its tracing) is done
            assert time.monotonic() < deadline, cluster.output(0)[-3000:]
            time.sleep(0.2)
        cluster.signal(1, signal.SIGKILL)
        start = time.monotonic()
        code = cluster.wait(config.collective_timeout_s + 30, [0])[0]
        elapsed, output = time.monotonic() - start, cluster.output(0)
    assert code == 1, output[-3000:]
    assert elapsed < config.collective_timeout_s + 10
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "/job:worker/replica:0/task:1" in lines[0], output[-3000:]
    assert "restart all workers with the same command to resume" in lines[0]


@pytest.mark.multiprocess
def test_workers_with_different_flags_are_refused_naming_the_fields(tmp_path):
    config = _config(tmp_path)
    model_dir = str(tmp_path / "run")
    commands = [_train_command(config, model_dir), _train_command(config.replace(k=3), model_dir)]
    with LocalCluster(commands) as cluster:
        codes = cluster.wait(TIMEOUT_S)
        outputs = [cluster.output(i) for i in range(2)]
    assert codes == [1, 1], outputs[0][-3000:]
    for output in outputs:
        assert "error: The workers disagree" in output
        assert "k: 2 (chief) vs 3 (replica 1)" in output
    assert not os.path.exists(os.path.join(model_dir, "config.json"))  # nothing written


def _validation(config, strategy):
    from tfvae.training import loop

    keras.utils.set_random_seed(config.seed)
    steps = Steps(config, strategy)
    images = data.load_config_split(config, "validation", config.val_size)
    batches, num = loop.validation_batches(config, strategy, images.map(lambda ex: ex["image"]))

    class Quiet:
        def scalars(self, *args):
            pass

    return num, loop.validate(config, steps, batches, num, Quiet())


def test_validation_with_a_last_batch_smaller_than_the_replicas(tiny_config, two_cpus):
    config = tiny_config.replace(batch_size=8, val_size=17)  # the last batch holds one example
    num_one, one = _validation(config, tf.distribute.get_strategy())
    num_two, two = _validation(config, two_cpus)
    assert num_one == num_two == 3
    assert two.keys() == one.keys()
    for name in one:
        assert two[name] == pytest.approx(one[name], rel=1e-6), name


def test_evaluate_split_on_two_replicas_equals_one(tiny_config, two_cpus):
    strategy = two_cpus
    keras.utils.set_random_seed(0)
    with strategy.scope():
        vae = model.build(tiny_config)
    args = (tiny_config, vae, "validation", 5, 5, 2, 3, 7)  # K=5, 5 examples, 2 per replica
    two = split.evaluate_split(*args, strategy=strategy)
    one = split.evaluate_split(*args)
    for name in ("log_likelihood", "elbo", "iwae_bound"):
        assert two[name].shape == (5,)
        np.testing.assert_allclose(two[name], one[name], rtol=1e-6)


def test_the_stop_flag_rides_in_the_step_reduction(tiny_config, two_cpus):
    strategy = two_cpus
    steps = Steps(tiny_config, strategy)
    images = next(iter(data.load_config_split(tiny_config, "train", 16).batch(16)))["image"]
    dataset = tf.data.Dataset.from_tensors(images)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    seed = tf.constant([0, 0], tf.int64)
    assert float(steps.train_step(batch, seed, tf.constant(0.0))["stop"]) == 0
    assert float(steps.train_step(batch, seed, tf.constant(1.0))["stop"]) == 2  # both replicas


def test_xla_with_several_replicas_is_refused_in_one_line(tiny_config, two_cpus):
    with pytest.raises(ValueError, match=r"`--jit_compile` is refused with 2 replicas"):
        Steps(tiny_config.replace(jit_compile=True), two_cpus)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(tiny_config, tmp_path, capfd):
    model_dir = str(tmp_path / "run")
    train.train_and_evaluate(tiny_config, model_dir)  # checkpoints at steps 4 and 8
    _truncate(os.path.join(model_dir, "ckpt-8.data-00000-of-00001"))
    capfd.readouterr()
    assert model.newest_readable_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-4")
    warning = capfd.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "skipping unreadable checkpoint" in warning[0]
    assert "ckpt-8" in warning[0]
    assert train.train_and_evaluate(tiny_config, model_dir, max_steps=5) == {}
    assert f"resuming from {os.path.join(model_dir, 'ckpt-4')} (step 4)" in capfd.readouterr().out
    assert os.path.exists(os.path.join(model_dir, "ckpt-5.index"))
    assert os.path.exists(os.path.join(model_dir, "ckpt-4.index"))  # the good one is kept
    _truncate(os.path.join(model_dir, "ckpt-5.index"))
    import subprocess

    run = subprocess.run(
        [sys.executable, "tools/bpp.py", f"--model_dir={model_dir}", "--k=3", "--num_images=4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert _read_json(os.path.join(model_dir, "metrics.json"))["checkpoint"] == ("ckpt-4")
    assert "skipping unreadable checkpoint" in run.stderr and "ckpt-5" in run.stderr


def test_tasks_are_counted_from_tf_config(monkeypatch, tiny_config):
    from tfvae.runtime import cluster

    cluster_spec = {"chief": ["a:1"], "worker": ["b:1", "c:1"], "ps": ["d:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster_spec}))
    assert cluster.num_tasks() == 3  # parameter servers are not workers
    for task, chief in ((dict(type="chief", index=0), True), (dict(type="worker", index=0), False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster_spec, "task": task}))
        assert cluster.is_chief_task() == chief
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}}))
    assert cluster.num_tasks() == 1
    assert train.make_strategy(tiny_config) is tf.distribute.get_strategy()  # auto, one task
    assert cluster.role(tf.distribute.get_strategy()) == cluster.Role(True, 0, 1)
    monkeypatch.delenv("TF_CONFIG")
    assert cluster.num_tasks() == 0


def test_a_peer_error_names_the_lost_task_even_where_tf_does_not(monkeypatch):
    from tfvae.runtime import cluster

    spec = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
    timeout = tf.errors.DeadlineExceededError(None, None, "Collective has timed out")
    line = cluster.describe_peer_error(timeout, 10)
    assert line.startswith("task /job:worker/replica:0/task:1 did not answer within ")
    assert "--collective_timeout_s=10" in line
    named = tf.errors.UnavailableError(None, None, "/job:worker/replica:0/task:0 heartbeat")
    assert "task /job:worker/replica:0/task:0 stopped sending heartbeats" in (
        cluster.describe_peer_error(named, 10)
    )
    spec["cluster"]["worker"].append("c:1")  # two peers: a timeout cannot say which one
    monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
    assert cluster.describe_peer_error(timeout, 10).startswith("another worker did not answer")
