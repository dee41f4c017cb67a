r"""Hyper-parameter search over tfvae's own training with keras-tuner.

  python tools/tune.py --flagfile=configs/quickstart.flags --tuner=hyperband --max_trials=12 \
    --search='upsampling=deconv,nearest,bilinear latent_dim=16,32,64 learning_rate=1e-4:3e-3:log' \
    --tune_dir=runs/tune

Every trial is an ordinary run in TUNE_DIR/trials/ID (train flags = the flagfile's, with the
trial's values), scored by the validation IWAE bound with --eval_k samples in bits/dim (lower is
better). Prints a line per trial, then a table of all trials; writes TUNE_DIR/results.{csv,json,
md,png} and TUNE_DIR/best.flags (python -m tfvae.train --flagfile=TUNE_DIR/best.flags).

--search: entries separated by spaces, each NAME=SPEC with NAME a training flag:
  NAME=a,b,c       a choice               upsampling=deconv,nearest,bilinear  latent_dim=16,32,64
  NAME=lo:hi       a uniform range        beta_1=0.5:0.95   width=16:64
  NAME=lo:hi:log   a log-uniform range    learning_rate=1e-4:3e-3:log
Rerunning the same command resumes the search; other settings in TUNE_DIR are refused. Ctrl-C or
SIGTERM checkpoints the running trial and exits 75 (resumable).

Several machines: keras-tuner's chief/worker mode over a shared TUNE_DIR. Run the same command
with KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (the chief's address) set everywhere, and
KERASTUNER_TUNER_ID=chief on the chief, a unique id (tuner0, tuner1, ...) on each worker. A
worker silent for --worker_timeout_s (or a chief that long unreachable) stops the search, exit 75.
"""

import contextlib

from tfvae import config as config_lib
from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
config_lib.define_flags(FLAG_DEFINITIONS)
define.string("tune_dir", "runs/tune", "Where the search's trials and results go.")
define.string(
    "search",
    "upsampling=deconv,nearest,bilinear latent_dim=16,32,64 learning_rate=1e-4:3e-3:log",
    "Search space: NAME=a,b,c (choice), NAME=lo:hi or NAME=lo:hi:log (range), separated by "
    "spaces; NAME is a training flag (see the top of this help).",
)
define.enum("tuner", "random", ["random", "hyperband", "bayesian"], "keras-tuner oracle.")
define.integer("max_trials", 10, "Trials at most (hyperband also ends with its brackets).")
define.integer(
    "eval_k", 5, "Importance samples K of the validation bound that scores trials.", lower_bound=1
)
define.integer("hyperband_factor", 3, "Hyperband's reduction factor; --epochs is its budget.")
define.float("worker_timeout_s", 600, "Longest wait for a silent worker or chief, seconds.")
define.integer("max_consecutive_failures", 3, "Failed trials in a row that end the search.")
define.string("model_dir", None, "Ignored: trial I runs in TUNE_DIR/trials/I.")


def _main(FLAGS) -> int | None:
    from tfvae import tuning
    from tfvae.runtime import files

    config = config_lib.from_flags(FLAGS)
    worker = tuning.role() == "worker"  # a worker writes only its trials: not a second writer
    with contextlib.nullcontext() if worker else files.DirectoryLock(FLAGS.tune_dir, "tuning"):
        rows = tuning.search(
            config, FLAGS.search, FLAGS.tune_dir, FLAGS.tuner, FLAGS.max_trials, FLAGS.eval_k,
            FLAGS.hyperband_factor, FLAGS.worker_timeout_s, FLAGS.max_consecutive_failures,
        )  # fmt: skip
    if tuning.role() == "worker":
        print(f"worker done; the chief writes the results to {FLAGS.tune_dir}")
        return
    names = [entry.name for entry in tuning.parse_search(FLAGS.search, config, FLAGS.tuner)]
    print(tuning.results.format_table(rows, names, FLAGS.eval_k))
    print(f"written to {FLAGS.tune_dir}: results.csv, results.json, results.md, results.png, "
          "best.flags")  # fmt: skip


main = common.command(
    FLAG_DEFINITIONS, _main, __doc__, aliases={"score_k": "eval_k", **config_lib.DEPRECATED_FLAGS}
)


def run() -> None:
    """The `tfvae-tune` console script."""
    common.run(main)
