"""The report's experiments (sections 2-4) as one resumable plan of package commands.

`tfvae-reproduce` builds a `plan.Plan` from a base Config and runs it with `Runner`: every step
is an installed command of this package (`tfvae-train`, `tfvae-bpp`, ...) run as a child
process, so the command written into REPORT.md is exactly what made each number. Layout of the
output directory:

  OUT/REPORT.md            the document (experiments.report), rewritten after every complete run
  OUT/state.json           finished steps with their fingerprints and wall seconds
  OUT/configs/NAME.flags   the full flags of each training run
  OUT/runs/NAME/           each run's model_dir (checkpoints, metrics.json, figures/)
  OUT/figures/             figures across runs (upsampling, VAE vs IWAE, loss curves)
  OUT/export/1/            the SavedModel of the best run

A step is done when state.json holds its fingerprint (its command, the content of its flagfile
and the fingerprints of the steps it depends on) and its outputs exist; anything else runs again.
An interrupted training resumes from its own checkpoints. This module imports no TensorFlow, so
a rerun with nothing to do takes a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from tfvae.experiments.plan import Plan, Step
from tfvae.runtime.files import write_atomically
from tfvae.runtime.stopping import EXIT_STOPPED, Stopped


def fingerprint(command: list[str], dep_fingerprints: list[str]) -> str:
    """A hash of the command, the content of any --flagfile it reads and its dependencies'."""
    digest = hashlib.sha256(shlex.join(command).encode())
    for arg in command:
        if arg.startswith("--flagfile="):
            with open(arg.split("=", 1)[1], "rb") as f:
                digest.update(f.read())
    for dep in dep_fingerprints:
        digest.update(dep.encode())
    return digest.hexdigest()[:16]


def installed_command(command: list[str]) -> list[str]:
    """argv of a step: its tfvae-* console script from this interpreter's environment (so a
    wheel install reproduces with the commands it installed), `python` as this interpreter."""
    name, *args = command
    if name == "python":
        return [sys.executable, *args]
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        raise RuntimeError(f"The command {name} is not installed; install the tfvae package.")
    return [path, *args]


class Runner:
    """Runs a Plan's steps in order, skipping finished ones, with progress over the whole plan.

    A SIGINT or SIGTERM is passed to the running command (a training saves a checkpoint and
    exits 75) and then raises `Stopped`. A failing command raises RuntimeError naming it.
    `execute` (argv -> exit code) replaces the default of one installed command per process
    (the test suite runs a plan's commands in its own process with it).
    """

    def __init__(self, plan: Plan, out=None, execute=None):
        self.plan, self.out = plan, out or sys.stdout
        self.execute = execute
        self.state_path = os.path.join(plan.output_dir, "state.json")
        self.state = {"steps": {}, "partial_seconds": {}}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state = json.load(f)
        self._child: subprocess.Popen | None = None
        self._signal: int | None = None
        self.started = time.monotonic()
        self.ran: list[str] = []

    def _print(self, index: int, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        total = len(self.plan.steps)
        print(
            f"[{index}/{total} | {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] "
            f"{text}",
            file=self.out,
            flush=True,
        )

    def _save_state(self) -> None:
        write_atomically(self.state_path, json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def _on_signal(self, signum, frame) -> None:
        del frame
        self._signal = signum
        self._forward()

    def _forward(self) -> None:
        """Passes a received stop signal on to the running child, once it exists."""
        child = self._child
        if self._signal is not None and child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited in between
                os.killpg(child.pid, self._signal)

    def run(self) -> None:
        """Runs every step not yet done; returns when all are, raises `Stopped` on a signal."""
        self.plan.write_flagfiles()
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal closed
        handlers = {s: signal.signal(s, self._on_signal) for s in stops}
        try:
            fingerprints: dict[str, str] = {}
            for index, step in enumerate(self.plan.steps, 1):
                if step.key.endswith(" best") and self.plan.best is None:
                    self._print(index, f"best run: {self.plan.choose_best()} (lowest NLL)")
                command = step.command(self.plan)
                key = fingerprint(command, [fingerprints[d] for d in step.deps])
                fingerprints[step.key] = key
                done = self.state["steps"].get(step.key, {})
                outputs = step.outputs(self.plan)
                if done.get("fingerprint") == key and all(map(os.path.exists, outputs)):
                    self._print(index, f"{step.key}: done")
                    continue
                self._print(index, f"{step.key}: {shlex.join(command)}")
                seconds = self._execute(step, command)
                self.state["steps"][step.key] = {
                    "fingerprint": key,
                    "command": shlex.join(command),
                    "seconds": seconds,
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
                self.state["partial_seconds"].pop(step.key, None)
                self._save_state()
                self.ran.append(step.key)
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)

    def _execute(self, step: Step, command: list[str]) -> float:
        if self._signal is not None:
            raise Stopped(f"stopped by signal {self._signal} before {step.key}")
        argv = installed_command(command)
        start = time.monotonic()
        try:
            if self.execute is not None:
                code = self.execute(command)
            else:
                self._child = subprocess.Popen(argv, start_new_session=True)
                self._forward()  # a signal that came while it was starting
                code = self._child.wait()
        finally:
            self._child = None
            seconds = time.monotonic() - start + self.state["partial_seconds"].get(step.key, 0.0)
        if code != 0 and (self._signal is not None or code == EXIT_STOPPED):
            self.state["partial_seconds"][step.key] = round(seconds, 1)
            self._save_state()
            raise Stopped(f"stopped during {step.key} (exit code {code})")
        if code != 0:
            raise RuntimeError(
                f"step '{step.key}' failed with exit code {code}: {shlex.join(command)}"
            )
        return round(seconds, 1)
