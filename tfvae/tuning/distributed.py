"""A distributed search: keras-tuner's chief and workers, with bounded waits.

keras-tuner's own chief (keras_tuner/src/distribute/oracle_chief.py) waits forever for a worker
that died holding a trial (keras-tuner#915) and polls every 20 s once the oracle is done. This
one serves the same gRPC service, notes when each trial and worker was last heard from (workers
send a heartbeat every worker_timeout_s / 4 while a trial runs) and stops the search, resumably,
when a running trial's worker has been silent for worker_timeout_s, or when, once workers have
come, none asked for a trial for that long (before the first worker, it waits). A rerun of the
chief reloads the oracle, and the trials that were running continue from their checkpoints.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent import futures

import grpc
import keras_tuner as kt

from tfvae.runtime import stopping

KERAS_TUNER_MINOR = "1.4"  # the keras-tuner whose private modules (src.protos, src.distribute) fit
KERAS_TUNER_REQUIREMENT = "keras-tuner>=1.4.7,<1.5"  # setup.cfg's pin (a test keeps them equal)


def check_keras_tuner(version: str = kt.__version__) -> None:
    """Raises ImportError (one line) unless keras-tuner is the minor version this module uses."""
    if not version.startswith(KERAS_TUNER_MINOR + "."):
        raise ImportError(
            f"keras-tuner {version} is installed, but the distributed search uses the private "
            f"modules of keras-tuner {KERAS_TUNER_MINOR}.x: pip install "
            f"'{KERAS_TUNER_REQUIREMENT}'."
        )


check_keras_tuner()
from keras_tuner.src import protos  # noqa: E402 (checked above: private, version-bound)
from keras_tuner.src.distribute import oracle_chief  # noqa: E402

POLL_S = 0.2  # seconds between the chief's looks at its workers


class Stopped(stopping.Stopped, kt.errors.FatalError):
    """The search stopped, resumably: on SIGINT/SIGTERM (a running trial saved a checkpoint), or
    in a distributed search when the chief or a worker was silent past --worker_timeout_s.

    A `stopping.Stopped` (the command exits 75) and a keras-tuner FatalError, so keras-tuner
    lets it through instead of recording it as a failed trial.
    """


def role() -> str:
    """'chief', 'worker' or 'single', from keras-tuner's KERASTUNER_* environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in os.environ]
    if missing:
        raise ValueError(f"KERASTUNER_ORACLE_IP is set but not {' and '.join(missing)}.")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


class BoundedStub:
    """keras-tuner's gRPC stub with every call's wait bounded (keras-tuner's own is an hour)."""

    def __init__(self, stub, timeout_s: float, address: str):
        self._stub, self._timeout_s, self._address = stub, timeout_s, address

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **kwargs):
            try:
                return method(request, **{**kwargs, "timeout": self._timeout_s})
            except grpc.RpcError as error:
                raise Stopped(
                    f"The chief at {self._address} did not answer {name} within "
                    f"{self._timeout_s:g} s (--worker_timeout_s; {error.code().name}): this "
                    "worker stops, a running trial checkpointed; rerun it to resume."
                ) from None

        return call


class Heartbeat:
    """A worker's thread telling the chief, every worker_timeout_s / 4, that its trial runs.

    If the chief does not answer, the worker stops itself (SIGTERM: the trial checkpoints).
    """

    def __init__(self, tuner, trial_id: str):
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(tuner, trial_id), daemon=True).start()

    def _run(self, tuner, trial_id):
        while not self._done.wait(tuner.worker_timeout_s / 4):
            try:
                tuner.oracle.get_trial(trial_id)
            except Stopped as lost:
                tuner._lost = str(lost)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self):
        self._done.set()


class _Servicer(oracle_chief.OracleServicer):
    """keras-tuner's servicer, noting when each worker and trial was last heard from."""

    def __init__(self, oracle):
        super().__init__(oracle)
        self.started = self.last_contact = time.monotonic()
        self.seen = {}  # tuner_id or trial_id -> time.monotonic() of the last call naming it

    def _touch(self, *keys):
        self.last_contact = time.monotonic()
        self.seen.update(dict.fromkeys(keys, self.last_contact))

    def CreateTrial(self, request, context):  # noqa: N802
        response = super().CreateTrial(request, context)
        self._touch(request.tuner_id, response.trial.trial_id)
        return response

    def GetTrial(self, request, context):  # noqa: N802 (also the workers' heartbeat)
        self._touch(request.trial_id)
        return super().GetTrial(request, context)

    def UpdateTrial(self, request, context):  # noqa: N802
        self._touch(request.trial_id)
        return super().UpdateTrial(request, context)

    def EndTrial(self, request, context):  # noqa: N802
        self._touch(request.trial.trial_id)
        return super().EndTrial(request, context)


@kt.synchronized
def verdict(oracle, servicer: _Servicer, timeout_s: float) -> str | None:
    """None while the search goes on; 'done' when it has finished; else why it must stop.

    Runs under the oracle's lock (the gRPC thread changes the same state).
    """
    now = time.monotonic()

    def silent(key):
        return now - servicer.seen.get(key, servicer.started) > timeout_s

    lost = [f"{tuner} (trial {t.trial_id})" for tuner, t in oracle.ongoing_trials.items()
            if silent(t.trial_id)]  # fmt: skip
    if lost:
        return (
            f"worker {', '.join(lost)} silent for over {timeout_s:g} s (--worker_timeout_s): "
            "the search stops; rerun the chief and workers to resume (running trials continue "
            "from their checkpoints)."
        )
    if oracle.ongoing_trials:
        return None
    if servicer.stop_triggered:  # the oracle is done: wait for the live workers to hear it
        return None if [t for t in oracle.tuner_ids if not silent(t)] else "done"
    if servicer.seen and now - servicer.last_contact > timeout_s:  # workers came and went
        return (
            f"no worker asked for a trial for over {timeout_s:g} s (--worker_timeout_s): the "
            "search stops; start workers with the same flags and rerun the chief to resume."
        )
    return None


def serve(oracle, timeout_s: float, stop) -> None:
    """Serves `oracle` at KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT until the search is done.

    Raises tuning.Stopped when a worker is lost (see `verdict`) or on SIGINT/SIGTERM (`stop` is
    a stopping.StopRequest); ValueError when the address cannot be listened on.
    """
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    servicer = _Servicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        raise ValueError(f"The chief cannot listen on {address} (KERASTUNER_ORACLE_IP/PORT).")
    server.start()
    print(f"chief: serving the oracle on {address}", flush=True)
    try:
        while True:
            time.sleep(POLL_S)
            if stop.signal_name:
                raise Stopped(f"{stop.signal_name}: the chief stopped; rerun it to resume.")
            outcome = verdict(oracle, servicer, timeout_s)
            if outcome == "done":
                return
            if outcome:
                raise Stopped(outcome)
    finally:
        server.stop(grace=1)
