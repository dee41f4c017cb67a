"""One search: keras-tuner's oracle over a declared space, resumable, refused on a tune_dir
that holds another search; its results table written beside the trials (see `search`).
"""

from __future__ import annotations

import dataclasses
import os

import keras_tuner as kt

from tfvae.runtime import files
from tfvae.tuning import results
from tfvae.tuning.distributed import role
from tfvae.tuning.space import Settings, hyperparameters, parse_search
from tfvae.tuning.tuner import OBJECTIVE, Tuner

TUNERS = ("random", "hyperband", "bayesian")
SETTINGS = "search.json"  # what the search was started with, checked on resume


def check_settings(tune_dir: str, settings: Settings, write: bool) -> None:
    """Refuses a tune_dir holding another search (one line listing the differing entries);
    writes search.json on a new search when `write`."""
    path = os.path.join(tune_dir, SETTINGS)
    saved = files.read_json(path, default=None)
    if saved is not None:
        differing = settings.differences(saved)
        if differing:
            raise ValueError(
                f"{tune_dir} holds a search with other settings; use a new --tune_dir or the "
                f"saved ones. Differing: {'; '.join(differing)}."
            )
    elif write:
        files.write_json(path, dataclasses.asdict(settings))


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
    """Runs, or resumes, a search; returns the trials' records (see results.collect).

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
        rows = results.collect(tune_dir)
        if role() != "worker" and rows:
            results.write(tune_dir, rows, settings.space, score_k)
    return rows
