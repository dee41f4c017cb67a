"""The keras-tuner Tuner whose trials are tfvae runs, and how a trained run is scored."""

from __future__ import annotations

import glob
import math
import os
import shutil
import tempfile
import time

import keras_tuner as kt

from tfvae.runtime import files, stopping
from tfvae.training import train
from tfvae.tuning import distributed
from tfvae.tuning.distributed import Stopped
from tfvae.tuning.results import RECORD
from tfvae.tuning.space import searched_values, trial_config

OBJECTIVE = "validation_bits_per_dim"


def score(config, model_dir: str, score_k: int, seed: int = 0) -> dict:
    """The objective of a trained run: validation IWAE-`score_k` bound in bits/dim.

    The bound uses `score_k` samples per example (one group of k = score_k) with a fixed seed, so
    it compares trials that trained with different k. Goes through `split.evaluate_split` so
    that pixels become x exactly as in every other evaluation.

    Returns:
      {"objective": bits/dim (float, lower is better), "bound_nats": per image (float),
       "active_units": int}.
    """
    import numpy as np

    from tfvae.evaluation import split, units
    from tfvae.models import vae as model

    _, vae, _ = model.restore(model_dir)
    results = split.evaluate_split(
        config.replace(k=score_k), vae, "validation", score_k, config.val_size,
        batch_size=50, chunk_size=score_k, seed=seed,
    )  # fmt: skip
    bound = float(np.mean(results["iwae_bound"]))
    convention = units.convention_for(config.likelihood)  # the search refused Bernoulli
    bpd = float(units.bits_per_dim(-bound, config.num_dims, convention))
    return {"objective": bpd, "bound_nats": bound, "active_units": results["active_units"]}


def copy_run(source: str, target: str) -> None:
    """Copies a run folder atomically: into a temporary folder beside `target`, then renamed.

    A crash mid-copy leaves only a `.ID-*` temporary folder, never a half-copied run.
    """
    parent, name = os.path.split(os.path.abspath(target))
    for stale in glob.glob(os.path.join(parent, f".{name}-*")):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
    shutil.copytree(source, temporary, dirs_exist_ok=True, ignore=shutil.ignore_patterns(RECORD))
    files.replace_directory(temporary, target)


def _checkpoint_step(model_dir: str) -> int:
    """The optimizer step of the newest checkpoint in model_dir (0 without one)."""
    import tensorflow as tf

    from tfvae.models import vae as model

    path = model.newest_readable_checkpoint(model_dir) if os.path.isdir(model_dir) else None
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
        self._stop, self._lost = stopping.StopRequest(), None
        super().__init__(oracle=oracle, directory=tune_dir, project_name="oracle")
        if distributed.role() == "worker":  # keras-tuner wrapped the oracle in a client
            address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
            stub = distributed.BoundedStub(self.oracle.stub, self.worker_timeout_s, address)
            self.oracle.stub = stub  # every call to the chief bounded

    def search(self, *args, **kwargs):
        restore = self._stop.install()
        try:
            if distributed.role() == "chief":
                self.save()  # keras-tuner writes its project only when a trial ends
                return distributed.serve(self.oracle, self.worker_timeout_s, self._stop)
            return super().search(*args, **kwargs)
        finally:
            restore()

    def on_search_begin(self):
        self.save()  # so that an interruption during the very first trial resumes too

    def pre_create_trial(self):
        if self._stop.signal_name:
            raise Stopped(f"{self._stop.signal_name}: the search stopped; rerun it to resume.")
        if distributed.role() == "worker":
            time.sleep(0.05)  # keras-tuner asks again at once while the oracle answers IDLE

    def trial_dir(self, trial_id: str) -> str:
        return os.path.join(self.tune_dir, "trials", trial_id)

    def run_trial(self, trial, *args, **kwargs) -> dict:
        model_dir = self.trial_dir(trial.trial_id)
        values = dict(trial.hyperparameters.values)
        record = files.read_json(os.path.join(model_dir, RECORD), default=None) or {}
        if record.get("status") == "completed":  # done, but its end never reached the oracle
            return {OBJECTIVE: record["objective"]}
        record.update(
            trial_id=trial.trial_id, tuner_id=self.tuner_id, status="running", message=None,
            values=searched_values(values),
            parent=values.get("tuner/trial_id"),
        )  # fmt: skip
        print(f"trial {trial.trial_id}: {_describe(values)}", flush=True)
        worker = distributed.role() == "worker"  # tells the chief it is alive while it trains
        heartbeat = distributed.Heartbeat(self, trial.trial_id) if worker else None
        start = time.perf_counter()
        try:
            result = self._train_and_score(record, values, model_dir)
        except stopping.Stopped as stopped:  # the trial's training saved a checkpoint
            self._end(record, model_dir, start, "stopped", str(stopped))
            message = self._lost or f"trial {trial.trial_id}: {stopped}"
            raise Stopped(message, stopped.signal_name, stopped.step) from None
        except (ValueError, FloatingPointError, OSError) as error:  # e.g. a parent run missing
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
        files.write_json(os.path.join(model_dir, RECORD), record)
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
        files.write_json(os.path.join(model_dir, RECORD), record)
        outcome = f"{record['objective']:.4f} bits/dim" if status == "completed" else message
        print(f"trial {record['trial_id']} {status} in {wall:.0f} s: {outcome}", flush=True)
