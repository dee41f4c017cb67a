"""Faults found by trying: two writers on one directory, a full disk, a broken config.json."""

import errno
import glob
import os
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.factory import run_command
from tfvae import config as config_lib
from tfvae.cli import bpp as bpp_cli
from tfvae.cli import train as train_cli
from tfvae.runtime import files
from tfvae.training import train


def _train_args(config, model_dir):
    return ["tfvae-train", *config_lib.to_flags(config, {"model_dir": model_dir})]


def test_a_second_writer_of_a_model_dir_is_refused_naming_the_holder(tiny_config, tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    with files.DirectoryLock(model_dir, "training"):
        code = train_cli.main(_train_args(tiny_config.replace(epochs=1), model_dir))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert f"is in use by pid {os.getpid()} on " in err[0] and "(training)" in err[0]
    assert sorted(os.listdir(model_dir)) == [files.LOCK_FILE]  # nothing else written


def test_a_crashed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import os, sys, time\nfrom tfvae.runtime import files\n"
        "files.DirectoryLock(sys.argv[1], 'training').acquire()\nprint('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(files.LockHeldError, match=f"pid {child.pid} on "):
            files.DirectoryLock(str(tmp_path)).acquire()
        child.send_signal(signal.SIGKILL)  # a crash: the kernel releases the lock
        child.wait(timeout=30)
        files.DirectoryLock(str(tmp_path)).acquire().release()
    finally:
        child.kill()
        child.wait(timeout=30)


def test_a_full_disk_leaves_the_target_and_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"kept": 1}')

    def write(f):
        f.write(b"{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.DiskFullError, match=f"No space left on the device of {path}"):
        files.write_atomically(str(path), write)
    assert path.read_text() == '{"kept": 1}' and os.listdir(tmp_path) == ["metrics.json"]


def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one_and_resumes(
    tiny_config, tmp_path, monkeypatch, capsys
):
    model_dir = str(tmp_path / "run")
    config = tiny_config.replace(epochs=2)
    save = tf.train.CheckpointManager.save

    def full_disk_at_epoch_two(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number > 4:  # 4 steps per epoch: the second epoch's save
            os.makedirs(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"))
            raise tf.errors.ResourceExhaustedError(None, None, "write: No space left on device")
        return save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk_at_epoch_two)
    assert train_cli.main(_train_args(config, model_dir)) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith(f"error: No space left on the device of {model_dir}")
    assert "last good checkpoint is kept" in last and "Traceback" not in last
    assert not glob.glob(os.path.join(model_dir, "*_temp*"))
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-4")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    metrics = train.train_and_evaluate(config, model_dir)  # space freed: the run resumes
    assert metrics and tf.train.latest_checkpoint(model_dir).endswith("ckpt-8")


def test_read_json_gives_the_default_only_for_a_missing_file(tmp_path):
    missing, broken = str(tmp_path / "missing.json"), tmp_path / "broken.json"
    assert files.read_json(missing, default=None) is None
    assert files.read_json(missing, default={}) == {}
    with pytest.raises(FileNotFoundError):
        files.read_json(missing)
    broken.write_text("{")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        files.read_json(str(broken), default={})
    assert files.read_json(files.write_json(missing, {"a": 1}), default=None) == {"a": 1}


def test_a_broken_config_json_names_the_file_and_that_the_run_cannot_be_restored(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text('{\n  "k": 5,\n  "width":\n')  # a truncated file
    with pytest.raises(ValueError, match=f"{path} is not valid JSON .*cannot be restored"):
        config_lib.load(str(path))
    assert bpp_cli.main(["tfvae-bpp", f"--model_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path} is not valid JSON" in err[0]


@pytest.mark.parametrize(
    "command,directory_flag,args",
    [
        ("reproduce", "output_dir", ["--epochs=1", "--image_size=16", "--eval_k=2"]),
        ("tune", "tune_dir", ["--epochs=1", "--image_size=16", "--search=latent_dim=2,3"]),
    ],
)
def test_an_experiment_or_a_search_directory_has_one_writer(
    command, directory_flag, args, tmp_path, capsys
):
    import importlib

    main = importlib.import_module(f"tfvae.cli.{command}").main
    directory = tmp_path / "out"
    with files.DirectoryLock(str(directory), "another run"):
        code = main([f"tfvae-{command}", f"--{directory_flag}={directory}", *args])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and f"in use by pid {os.getpid()} on " in last and "(another run)" in last
    assert sorted(os.listdir(directory)) == [files.LOCK_FILE]


_FDOPEN = os.fdopen


class _FullFile:
    """A binary file on a full device: every write fails with ENOSPC."""

    def __init__(self, fd):
        self.file = _FDOPEN(fd, "wb")

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_in_an_export_a_figure_or_metrics_is_one_line_and_keeps_what_was_there(
    tiny_config, tmp_path, monkeypatch, capsys
):
    model_dir = tmp_path / "run"
    train.train_and_evaluate(tiny_config.replace(epochs=1), str(model_dir))
    bpp = ("bpp", f"--model_dir={model_dir}", "--k=2", "--num_images=4")
    assert run_command(*bpp).returncode == 0  # metrics.json, per-example npz
    metrics = (model_dir / "metrics.json").read_text()
    before = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*"))
    capsys.readouterr()
    save = tf.saved_model.save

    def full_disk_save(module, path, **kwargs):
        save(module, path, **kwargs)  # a complete SavedModel in the hidden staging folder ...
        raise tf.errors.ResourceExhaustedError(None, None, "write: No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", full_disk_save)  # ... then the disk is full
    runs = [run_command("export", f"--model_dir={model_dir}")]
    monkeypatch.setattr(tf.saved_model, "save", save)
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: _FullFile(fd))  # every atomic write
    runs += [
        run_command("export", f"--model_dir={model_dir}"),  # its metadata
        run_command(*bpp),
        run_command("traverse", f"--model_dir={model_dir}", "--dims=0"),
    ]
    for result in runs:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[-1].startswith("error: No space left on the device of "), lines[-1]
    assert (model_dir / "metrics.json").read_text() == metrics  # not half-written
    after = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*"))
    leftover = [p for p in after if p not in before and p.parts[0] not in ("figures", "export")]
    assert not leftover, leftover
    assert not list(model_dir.rglob("*.tmp")) and not list(model_dir.rglob(".tmp-*"))
    assert not (model_dir / "export" / "1").exists() and not list(model_dir.rglob("*.png"))
