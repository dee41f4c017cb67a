"""Hyper-parameter search with keras-tuner over tfvae's own `train.train_and_evaluate`.

A trial is an ordinary run in TUNE_DIR/trials/ID (config.json, checkpoints, TensorBoard), so every
tool works on it. After training, a trial is scored by the same measure for every trial: the
IWAE-`score_k` bound on the validation split in bits/dim (lower is better), whatever k the trial
trained with. keras-tuner's oracle (random, hyperband or bayesian) proposes the values; its project
is TUNE_DIR/oracle/. Each trial also writes TUNE_DIR/trials/ID/tuning.json (values, status,
message, objective, wall time); the results table is built from those files, so it holds the
trials that every worker of a distributed search ran.

Search space (`--search`): entries separated by spaces, each NAME=SPEC, NAME a Config field:
  NAME=a,b,c       a choice among values          upsampling=deconv,nearest,bilinear
  NAME=lo:hi       a uniform range (int or float)  width=16:64
  NAME=lo:hi:log   a log-uniform range             learning_rate=1e-4:3e-3:log
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time

import keras_tuner as kt

from tfvae import config as config_lib
from tfvae import train
from tfvae.tuning_results import RECORD

OBJECTIVE = "validation_bits_per_dim"
TUNERS = ("random", "hyperband", "bayesian")
SETTINGS = "search.json"  # what the search was started with, checked on resume
# Fields that define the data every trial is scored on, or that change nothing a run computes.
UNSEARCHABLE = {
    **{name: "it defines the validation data every trial is scored on"
       for name in ("dataset", "data_dir", "image_size", "crop", "val_size")},
    **{name: "it does not change what a run computes"
       for name in ("log_every_steps", "images_every_epochs", "checkpoints_to_keep")},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Entry:
    """One searched hyper-parameter: a choice among `values`, or a range [low, high]."""

    name: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    sampling: str = "linear"

    def __str__(self) -> str:
        if self.values:
            return f"{self.name}={','.join(str(v) for v in self.values)}"
        return f"{self.name}={self.low!r}:{self.high!r}:{self.sampling}"


def _field_type(name: str) -> type:
    field = {f.name: f for f in dataclasses.fields(config_lib.Config)}[name]
    return {"int": int, "float": float, "bool": bool, "str": str}.get(field.type, field.type)


def _parse_value(name: str, text: str):
    kind = _field_type(name)
    try:
        if kind is bool:
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        return kind(text)
    except (ValueError, KeyError):
        raise ValueError(
            f"--search: {name}={text!r} is not a valid {kind.__name__} for `--{name}`."
        ) from None


def parse_search(text: str, base, tuner: str = "random") -> list[Entry]:
    """Parses and validates a search space against `base` (a Config); ValueError, one line.

    Every value (each choice, both ends of a range) must give a valid Config on its own.
    """
    known = {f.name for f in dataclasses.fields(config_lib.Config)}
    entries, names = [], set()
    for item in text.split():
        name, _, spec = item.partition("=")
        if name not in known:
            raise ValueError(
                f"--search: {name!r} is not a Config field; accepted: {', '.join(sorted(known))}."
            )
        if name in UNSEARCHABLE or (name == "epochs" and tuner == "hyperband"):
            why = UNSEARCHABLE.get(name, "hyperband sets each trial's epochs (tuner/epochs)")
            raise ValueError(f"--search: {name} cannot be searched: {why}; set it with --{name}.")
        if name in names or not spec:
            raise ValueError(f"--search: {item!r} is repeated or has no values (NAME=a,b, lo:hi).")
        names.add(name)
        entries.append(_parse_entry(name, spec))
    if not entries:
        raise ValueError("--search is empty; give at least one NAME=a,b,c or NAME=lo:hi[:log].")
    for entry in entries:
        for value in entry.values or (entry.low, entry.high):
            try:
                base.replace(**{entry.name: value})
            except ValueError as error:
                raise ValueError(f"--search: {entry}: {error}") from None
    likelihoods = next((e.values for e in entries if e.name == "likelihood"), (base.likelihood,))
    if "bernoulli" in likelihoods:
        raise ValueError(
            "--search: likelihood bernoulli gives no bits/dim to compare (a cross-entropy on "
            "8-bit pixels, not a likelihood); accepted: discretized_logistic, gaussian."
        )
    return entries


def _parse_entry(name: str, spec: str) -> Entry:
    if ":" not in spec:
        values = tuple(_parse_value(name, v) for v in spec.split(","))
        if len(set(values)) != len(values):
            raise ValueError(f"--search: {name}={spec} repeats a value.")
        return Entry(name, values)
    parts = spec.split(":")
    kind = _field_type(name)
    if kind not in (int, float) or len(parts) not in (2, 3):
        raise ValueError(
            f"--search: {name}={spec}: ranges are lo:hi or lo:hi:log, for int and float fields; "
            f"give a choice as {name}=a,b,c."
        )
    sampling = parts[2] if len(parts) == 3 else "linear"
    low, high = (_parse_value(name, p) for p in parts[:2])
    if sampling not in ("linear", "log") or not low < high or (sampling == "log" and low <= 0):
        raise ValueError(
            f"--search: {name}={spec}: need lo < hi (lo > 0 for log) and a sampling of "
            "linear or log."
        )
    return Entry(name, low=low, high=high, sampling=sampling)


def hyperparameters(entries: list[Entry]):
    """The keras_tuner.HyperParameters declaring the whole space (before the first trial)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for e in entries:
        if e.values:
            hp.Choice(e.name, list(e.values))
        elif _field_type(e.name) is int:
            hp.Int(e.name, e.low, e.high, sampling=e.sampling)
        else:
            hp.Float(e.name, e.low, e.high, sampling=e.sampling)
    return hp


def trial_config(base, values: dict):
    """The Config of a trial: `base` with its searched values (and hyperband's tuner/epochs)."""
    changes = {k: _field_type(k)(v) for k, v in values.items() if not k.startswith("tuner/")}
    if "tuner/epochs" in values:
        changes["epochs"] = int(values["tuner/epochs"])
    return base.replace(**changes)


def score(config, model_dir: str, score_k: int, seed: int = 0) -> dict:
    """The objective of a trained run: validation IWAE-`score_k` bound in bits/dim.

    The bound uses `score_k` samples per example (one group of k = score_k) with a fixed seed, so
    it compares trials that trained with different k. Goes through `evaluate.evaluate_split` so
    that pixels become x exactly as in every other evaluation.

    Returns:
      {"objective": bits/dim (float, lower is better), "bound_nats": per image (float),
       "active_units": int}.
    """
    import numpy as np

    from tfvae import evaluate, model

    _, vae, _ = model.restore(model_dir)
    results = evaluate.evaluate_split(
        config.replace(k=score_k), vae, "validation", score_k, config.val_size,
        batch_size=50, chunk_size=score_k, seed=seed,
    )  # fmt: skip
    bound = float(np.mean(results["iwae_bound"]))
    dims = config.image_size**2 * 3
    bpd = float(evaluate.bits_per_dim(-bound, dims, evaluate.convention_for(config.likelihood)))
    return {"objective": bpd, "bound_nats": bound, "active_units": results["active_units"]}


def _write_json(path: str, value) -> None:
    """Writes JSON atomically (temporary file in the same folder, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
        json.dump(value, f, indent=2, default=str)
        f.write("\n")
    os.replace(f.name, path)


def _read_json(path: str):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def copy_run(source: str, target: str) -> None:
    """Copies a run folder atomically: into a temporary folder beside `target`, then renamed.

    A crash mid-copy leaves only a `.ID-*` temporary folder, never a half-copied run.
    """
    parent, name = os.path.split(os.path.abspath(target))
    for stale in glob.glob(os.path.join(parent, f".{name}-*")):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
    shutil.copytree(source, temporary, dirs_exist_ok=True, ignore=shutil.ignore_patterns(RECORD))
    os.replace(temporary, target)


class StopRequest:
    """SIGINT/SIGTERM outside training: a flag checked between trials (training has its own)."""

    def __init__(self):
        self.signal_name = None

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def install(self):
        """Installs the handlers; returns a function that restores the previous ones."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(s, h) for s, h in previous.items()]


def role() -> str:
    """'chief', 'worker' or 'single', from keras-tuner's KERASTUNER_* environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in os.environ]
    if missing:
        raise ValueError(f"KERASTUNER_ORACLE_IP is set but not {' and '.join(missing)}.")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a search depends on; saved as TUNE_DIR/search.json and checked on resume."""

    base: dict
    space: list
    tuner: str = "random"
    score_k: int = 5
    hyperband_factor: int = 3

    def differences(self, saved: dict) -> list[str]:
        """Lines naming every entry that differs from a saved search.json."""
        lines = []
        for key in ("tuner", "score_k", "hyperband_factor"):
            if saved.get(key) != getattr(self, key):
                lines.append(f"{key}: {saved.get(key)!r} (saved) vs {getattr(self, key)!r}")
        saved_space = dict(s.split("=", 1) for s in saved.get("space", []))
        space = dict(s.split("=", 1) for s in self.space)
        for name in sorted(set(saved_space) | set(space)):
            if saved_space.get(name) != space.get(name):
                lines.append(
                    f"search {name}: {saved_space.get(name, 'absent')} (saved) vs "
                    f"{space.get(name, 'absent')} (requested)"
                )
        ignore = config_lib.RUN_CONTROL_FIELDS[1:]
        saved_base = config_lib.Config(**saved.get("base", {}))
        lines += config_lib.differences(saved_base, config_lib.Config(**self.base), ignore)
        return lines


def check_settings(tune_dir: str, settings: Settings, write: bool) -> None:
    """Refuses a tune_dir holding another search (one line listing the differing entries);
    writes search.json on a new search when `write`."""
    path = os.path.join(tune_dir, SETTINGS)
    saved = _read_json(path)
    if saved is not None:
        differing = settings.differences(saved)
        if differing:
            raise ValueError(
                f"{tune_dir} holds a search with other settings; use a new --tune_dir or the "
                f"saved ones. Differing: {'; '.join(differing)}."
            )
    elif write:
        _write_json(path, dataclasses.asdict(settings))


class Stopped(train.Stopped, kt.errors.FatalError):
    """The search stopped, resumably: on SIGINT/SIGTERM (a running trial saved a checkpoint), or
    in a distributed search when the chief or a worker was silent past --worker_timeout_s.

    A `train.Stopped` (the tool exits 75 for both) and a keras-tuner FatalError, so keras-tuner
    lets it through instead of recording it as a failed trial.
    """

    def __init__(self, message: str, signal_name: str | None = None, step: int | None = None):
        Exception.__init__(self, message)
        self.signal_name = signal_name
        self.step = step


def _checkpoint_step(model_dir: str) -> int:
    """The optimizer step of the newest checkpoint in model_dir (0 without one)."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE")) if path else 0


def _describe(values: dict) -> str:
    shown = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    text = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
    )
    if "tuner/epochs" in values:
        text += f" epochs={values['tuner/epochs']}"
    if values.get("tuner/trial_id"):
        text += f" (continues trial {values['tuner/trial_id']})"
    return text


class Tuner(kt.Tuner):
    """A keras-tuner Tuner whose trials are tfvae runs in TUNE_DIR/trials/ID.

    `run_trial` trains with `train.train_and_evaluate` (resuming a trial's own checkpoint, or
    starting from a copy of its hyperband parent's run) and returns {OBJECTIVE: bits/dim}.
    A non-finite loss or an invalid config fails the trial with its message; SIGINT/SIGTERM
    raises `Stopped` with the trial checkpointed. In a distributed search the chief serves the
    oracle with bounded waits, and workers' calls to it time out after `worker_timeout_s`.
    """

    def __init__(self, oracle, base, tune_dir: str, score_k: int = 5, worker_timeout_s=600.0):
        self.base, self.tune_dir, self.score_k = base, tune_dir, score_k
        self.worker_timeout_s = float(worker_timeout_s)
        self._stop, self._lost = StopRequest(), None
        super().__init__(oracle=oracle, directory=tune_dir, project_name="oracle")
        if role() == "worker":  # keras-tuner wrapped the oracle in a client: bound its calls
            address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
            self.oracle.stub = _BoundedStub(self.oracle.stub, self.worker_timeout_s, address)

    def search(self, *args, **kwargs):
        restore = self._stop.install()
        try:
            if role() == "chief":
                self.save()  # keras-tuner writes its project only when a trial ends
                from tfvae import tuning_chief

                return tuning_chief.serve(self.oracle, self.worker_timeout_s, self._stop)
            return super().search(*args, **kwargs)
        finally:
            restore()

    def on_search_begin(self):
        self.save()  # so that an interruption during the very first trial resumes too

    def pre_create_trial(self):
        if self._stop.signal_name:
            raise Stopped(f"{self._stop.signal_name}: the search stopped; rerun it to resume.")
        if role() == "worker":
            time.sleep(0.05)  # keras-tuner asks again at once while the oracle answers IDLE

    def trial_dir(self, trial_id: str) -> str:
        return os.path.join(self.tune_dir, "trials", trial_id)

    def run_trial(self, trial, *args, **kwargs) -> dict:
        model_dir = self.trial_dir(trial.trial_id)
        values = dict(trial.hyperparameters.values)
        record = _read_json(os.path.join(model_dir, RECORD)) or {}
        if record.get("status") == "completed":  # done, but its end never reached the oracle
            return {OBJECTIVE: record["objective"]}
        record.update(
            trial_id=trial.trial_id, tuner_id=self.tuner_id, status="running", message=None,
            values={k: v for k, v in values.items() if not k.startswith("tuner/")},
            parent=values.get("tuner/trial_id"),
        )  # fmt: skip
        print(f"trial {trial.trial_id}: {_describe(values)}", flush=True)
        heartbeat = _Heartbeat(self, trial.trial_id) if role() == "worker" else None
        start = time.perf_counter()
        try:
            result = self._train_and_score(record, values, model_dir)
        except train.Stopped as stopped:
            self._end(record, model_dir, start, "stopped", str(stopped))
            message = self._lost or f"{stopped} (trial {trial.trial_id} of the search)"
            raise Stopped(message, stopped.signal_name, stopped.step) from None
        except (ValueError, FloatingPointError) as error:
            self._end(record, model_dir, start, "failed", str(error))
            raise kt.errors.FailedTrialError(str(error)) from None
        finally:
            if heartbeat:
                heartbeat.stop()
        record.update(result, final_step=_checkpoint_step(model_dir))
        self._end(record, model_dir, start, "completed")
        return {OBJECTIVE: record["objective"]}

    def _train_and_score(self, record, values, model_dir) -> dict:
        config = trial_config(self.base, values)
        record.update(epochs=config.epochs, score_k=self.score_k, config=config.to_dict())
        if record["parent"] and not os.path.exists(model_dir):
            copy_run(self.trial_dir(record["parent"]), model_dir)
        record["start_steps"] = [*record.get("start_steps", []), _checkpoint_step(model_dir)]
        _write_json(os.path.join(model_dir, RECORD), record)
        metrics = train.train_and_evaluate(config, model_dir)
        if self._lost:  # the chief went away while the run finished its last epoch
            raise Stopped(self._lost)
        result = score(config, model_dir, self.score_k, seed=config.seed)
        if not math.isfinite(result["objective"]):
            raise FloatingPointError(f"The validation bound is {result['objective']} bits/dim.")
        result["trained_bound_bits_per_dim"] = metrics.get("bound_bits_per_dim")
        return result

    def _end(self, record, model_dir, start, status, message=None):
        wall = record.get("wall_seconds", 0.0) + time.perf_counter() - start
        record.update(status=status, message=message, wall_seconds=round(wall, 1))
        _write_json(os.path.join(model_dir, RECORD), record)
        outcome = f"{record['objective']:.4f} bits/dim" if status == "completed" else message
        print(f"trial {record['trial_id']} {status} in {wall:.0f} s: {outcome}", flush=True)


class _BoundedStub:
    """keras-tuner's gRPC stub with every call's wait bounded (keras-tuner's own is an hour)."""

    def __init__(self, stub, timeout_s: float, address: str):
        self._stub, self._timeout_s, self._address = stub, timeout_s, address

    def __getattr__(self, name):
        import grpc

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


class _Heartbeat:
    """A worker's thread telling the chief, every worker_timeout_s / 4, that its trial runs.

    If the chief does not answer, the worker stops itself (SIGTERM: the trial checkpoints).
    """

    def __init__(self, tuner: Tuner, trial_id: str):
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


def make_oracle(tuner: str, entries, base, max_trials: int, factor: int = 3, max_failures=3):
    """keras-tuner's oracle for `tuner` over the declared space, minimising OBJECTIVE.

    Its seed is base.seed + 1 (a fixed seed: a resumed search proposes what it would have).
    Hyperband's largest budget is base.epochs; it stops after `max_trials` trials too.
    """
    common = dict(
        objective=kt.Objective(OBJECTIVE, "min"), hyperparameters=hyperparameters(entries),
        allow_new_entries=False, tune_new_entries=False, seed=base.seed + 1,
        max_consecutive_failed_trials=max_failures,
    )  # fmt: skip
    if tuner == "random":
        oracle = kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    elif tuner == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=base.epochs, factor=factor, **common)
        oracle.max_trials = max_trials  # read by Oracle.create_trial
    else:
        raise ValueError(f"Flag `--tuner` is {tuner!r}; accepted: {', '.join(TUNERS)}.")
    oracle.verbose = 0  # progress lines come from Tuner.run_trial
    return oracle


def search(base, space: str, tune_dir: str, tuner: str = "random", max_trials: int = 10,
           score_k: int = 5, hyperband_factor: int = 3, worker_timeout_s: float = 600.0,
           max_consecutive_failures: int = 3) -> list[dict]:  # fmt: skip
    """Runs, or resumes, a search; returns the trials' records (see tuning_results.collect).

    Args:
      base: the Config every trial starts from; `space`: the --search text (module docstring).
      tune_dir: holds search.json, oracle/ (keras-tuner's project), trials/ID (one run each) and,
        written here unless this process is a worker, results.{csv,json,md,png} and best.flags.
      tuner: random, hyperband or bayesian; max_trials: trials at most.
      score_k: importance samples of the validation bound every trial is scored with.
      worker_timeout_s: in a distributed search, the longest wait for the chief or a worker.

    Raises:
      ValueError: a bad argument or search space, or other settings in tune_dir (one line).
      Stopped: a signal, or a distributed peer lost; rerunning the same command resumes.
    """
    from tfvae import tuning_results

    if max_trials < 1 or score_k < 1 or hyperband_factor < 2 or not worker_timeout_s > 0:
        raise ValueError(
            f"Need max_trials >= 1, score_k >= 1, hyperband_factor >= 2, worker_timeout_s > 0; "
            f"got {max_trials}, {score_k}, {hyperband_factor}, {worker_timeout_s}."
        )
    entries = parse_search(space, base, tuner)
    settings = Settings(base.to_dict(), [str(e) for e in entries], tuner, score_k, hyperband_factor)
    check_settings(tune_dir, settings, write=role() != "worker")
    failures = max_consecutive_failures
    oracle = make_oracle(tuner, entries, base, max_trials, hyperband_factor, failures)
    try:
        Tuner(oracle, base, tune_dir, score_k, worker_timeout_s).search()
    except RuntimeError as error:  # keras-tuner's limit on consecutive failed trials
        if "consecutive failures" not in str(error):
            raise
        raise ValueError(
            f"{max_consecutive_failures} trials in a row failed (--max_consecutive_failures); "
            f"see the table in {tune_dir}."
        ) from None
    finally:
        rows = tuning_results.collect(tune_dir)
        if role() != "worker" and rows:
            tuning_results.write(tune_dir, rows, [e.name for e in entries], score_k)
    return rows
