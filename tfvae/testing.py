"""Several worker processes on one machine, with TF_CONFIG on free loopback ports.

For tests and the two-worker benchmark (TensorFlow's own multi_process_runner needs Bazel).
Where this process may (root with `unshare` and `nsenter`), the workers share a private network
namespace with only a loopback interface, so their ports collide with nothing else; otherwise
they listen on 127.0.0.1. Every process runs under a hard timeout and is killed and reaped on
exit from the `with` block, whatever happened.

    with LocalCluster([command, command]) as cluster:   # command: argv list, one per worker
        codes = cluster.wait(timeout_s=120)
        print(cluster.output(0))
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """TF_CONFIG naming workers at 127.0.0.1:ports, this process being worker `index`."""
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def _private_network() -> subprocess.Popen | None:
    """A process holding a new network namespace with loopback up, or None where unavailable."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        return None
    holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    own = os.readlink("/proc/self/ns/net")
    for _ in range(100):  # first wait until unshare has entered the new namespace, then lo up
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{holder.pid}/ns/net") == own:
                continue
        enter = ["nsenter", "-t", str(holder.pid), "-n", "ip"]
        up = subprocess.run([*enter, "link", "set", "lo", "up"], capture_output=True)
        shown = subprocess.run([*enter, "-o", "link", "show", "lo"], capture_output=True, text=True)
        if up.returncode == 0 and ",UP" in shown.stdout:
            return holder
        break
    holder.kill()
    holder.wait()
    return None


class LocalCluster:
    """Starts one worker process per command, each with its TF_CONFIG; kills all on exit.

    Args:
      commands: one argv list per worker; worker i gets TF_CONFIG index i.
      env: environment for all workers (default: this process's).
      private_network: use a private network namespace where possible.
    Attributes:
      processes: the Popen objects, in worker order; namespaced: True if in a private namespace.
    """

    def __init__(self, commands, env=None, private_network: bool = True):
        self.commands = commands
        self.env = dict(os.environ if env is None else env)
        self.private_network = private_network
        self.processes, self.namespaced = [], False
        self._holder, self._logs = None, None

    def __enter__(self):
        self._logs = tempfile.mkdtemp(prefix="tfvae-cluster-")
        self._holder = _private_network() if self.private_network else None
        self.namespaced = self._holder is not None
        prefix = ["nsenter", "-t", str(self._holder.pid), "-n"] if self._holder else []
        ports = free_ports(len(self.commands))
        for index, command in enumerate(self.commands):
            env = {**self.env, "TF_CONFIG": tf_config(ports, index)}
            with open(self._log(index), "w") as log:  # the child keeps its own descriptor
                self.processes.append(
                    subprocess.Popen(prefix + list(command), env=env, stdout=log, stderr=log)
                )
        return self

    def _log(self, index: int) -> str:
        return os.path.join(self._logs, f"worker{index}.log")

    def output(self, index: int) -> str:
        """Everything worker `index` wrote to stdout and stderr so far."""
        with open(self._log(index), errors="replace") as f:
            return f.read()

    def signal(self, index: int, signum=signal.SIGTERM) -> None:
        self.processes[index].send_signal(signum)

    def wait(self, timeout_s: float, indices=None) -> list[int | None]:
        """Exit codes of the workers `indices` (default all); None: still running at the deadline.

        Processes still running are killed when the `with` block ends.
        """
        deadline = time.monotonic() + timeout_s
        codes = []
        for i in indices if indices is not None else range(len(self.processes)):
            try:
                codes.append(self.processes[i].wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes

    def __exit__(self, *exc):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
        shutil.rmtree(self._logs, ignore_errors=True)
        return False
