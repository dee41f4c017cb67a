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

from tfvae.tuning import results
from tfvae.tuning.distributed import role
from tfvae.tuning.runner import TUNERS, make_oracle, search
from tfvae.tuning.space import Entry, Settings, hyperparameters, parse_search, trial_config
from tfvae.tuning.tuner import OBJECTIVE, Stopped, Tuner, copy_run, score

__all__ = [
    "OBJECTIVE", "TUNERS", "Entry", "Settings", "Stopped", "Tuner", "copy_run", "hyperparameters",
    "make_oracle", "parse_search", "results", "role", "score", "search", "trial_config",
]  # fmt: skip
