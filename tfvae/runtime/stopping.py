"""The stop protocol: SIGINT/SIGTERM become a request, work stops at a safe point, exit code 75.

A training saves a checkpoint at one agreed step, a search stops between trials, an experiment
forwards the signal to its running command; each then raises `Stopped`, and every tool exits
with EXIT_STOPPED ("stopped, resumable": the same command continues). TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import signal

EXIT_STOPPED = 75  # a stopped, resumable run: rerunning the same command continues it
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):  # noqa: N818 (a resumable stop, not an error)
    """Work stopped on a signal (or a lost peer) at a safe point; rerunning resumes it.

    Attributes:
      signal_name: 'SIGINT' or 'SIGTERM' received by this process, "another worker's signal"
        on workers that learnt of it through the step's all-reduce, or None.
      step: the optimizer step of the saved checkpoint (the same on every worker), or None.
    """

    def __init__(self, message: str, signal_name: str | None = None, step: int | None = None):
        super().__init__(message)
        self.signal_name = signal_name
        self.step = step

    @classmethod
    def at_checkpoint(cls, signal_name: str, step: int) -> Stopped:
        """The training's stop: a checkpoint was saved at `step`."""
        return cls(
            f"{signal_name}: checkpoint saved at step {step}; rerun the same command to resume.",
            signal_name,
            step,
        )


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag read at safe points (and by the train step's all-reduce)."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict | None = None

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def flag(self):
        """float32 scalar tensor for the train step: 1 once this process received a signal."""
        import tensorflow as tf

        return tf.constant(1.0 if self.signal_name else 0.0)

    def install(self):
        """Takes the signals (again after a multi-worker strategy's coordination service
        installed its own SIGTERM handler). Returns a function restoring the first handlers."""
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        if self._previous is None:
            self._previous = previous
        return self.restore

    def restore(self) -> None:
        """Puts back the handlers that were there before the first `install`."""
        for s, handler in (self._previous or {}).items():
            signal.signal(s, handler)
        self._previous = None

    @contextlib.contextmanager
    def installed(self):
        self.install()
        try:
            yield self
        finally:
            self.restore()
