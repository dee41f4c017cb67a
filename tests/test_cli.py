"""End to end: `python -m tfvae.train` as a user runs it (bad flags: in process)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.factory import run_command
from tfvae.runtime import stopping

TINY = [
    "--image_size=16", "--width=4", "--latent_dim=3", "--k=2", "--batch_size=16",
    "--train_size=64", "--val_size=32", "--learning_rate=0.001", "--log_every_steps=1",
]  # fmt: skip


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--k=0", "error: Flag `--k` is 0; it must be an integer >= 1."),
        ("--dataset=folder:/nonexistent", "error: --dataset=folder:/nonexistent: no such"),
        ("--image_size=48", "error: Flag `--image_size` is 48; it must be a power of two"),
    ],
)
def test_bad_flags_fail_before_any_work_in_one_line(tmp_path, flag, message):
    data_dir = f"--data_dir={tmp_path.parent / 'tfvae-data'}"
    run = run_command("train", data_dir, *TINY, *flag.split(), f"--model_dir={tmp_path / 'run'}")
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_sigint_saves_a_checkpoint_and_a_rerun_resumes(tmp_path):
    args = [*TINY, "--epochs=1000", f"--model_dir={tmp_path}"]
    command = [sys.executable, "-m", "tfvae.train", f"--data_dir={tmp_path.parent / 'tfvae-data'}"]
    process = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (tmp_path / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.2)  # the first epoch's checkpoint: training is under way
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == stopping.EXIT_STOPPED, stderr  # stopped, resumable: not "done"
    assert "SIGINT: checkpoint saved at step" in stdout
    step = int(stdout.split("checkpoint saved at step ")[1].split(";")[0])
    assert os.path.exists(tmp_path / f"ckpt-{step}.index")
    epochs = step // 4 + 1  # 4 steps per epoch: to the end of the epoch it stopped in
    data_dir = f"--data_dir={tmp_path.parent / 'tfvae-data'}"
    rerun = run_command("train", data_dir, *TINY, f"--epochs={epochs}", f"--model_dir={tmp_path}")
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {tmp_path / f'ckpt-{step}'}" in rerun.stdout
    assert os.path.exists(tmp_path / f"ckpt-{epochs * 4}.index")  # continued to the end
    assert "validation IWAE-2 bound: -" in rerun.stdout and "bits/dim" in rerun.stdout
    assert f"written to {tmp_path}" in rerun.stdout
    assert "img_s=" in rerun.stderr  # the progress bar
    assert (tmp_path / "config.json").exists()
