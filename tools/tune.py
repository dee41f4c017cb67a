r"""Hyper-parameter search over tfvae's own training with keras-tuner.

  python tools/tune.py --flagfile=configs/quickstart.flags --tuner=hyperband --max_trials=12 \
    --search='upsampling=deconv,nearest,bilinear latent_dim=16,32,64 learning_rate=1e-4:3e-3:log' \
    --tune_dir=runs/tune

Every trial is an ordinary run in TUNE_DIR/trials/ID (train flags = the flagfile's, with the
trial's values), scored by the validation IWAE bound with --score_k samples in bits/dim (lower is
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

import sys

from absl import app, flags, logging

from tfvae import config as config_lib

flags.DEFINE_string("tune_dir", "runs/tune", "Where the search's trials and results go.")
flags.DEFINE_string(
    "search",
    "upsampling=deconv,nearest,bilinear latent_dim=16,32,64 learning_rate=1e-4:3e-3:log",
    "Search space: NAME=a,b,c (choice), NAME=lo:hi or NAME=lo:hi:log (range), separated by "
    "spaces; NAME is a training flag (see the top of this help).",
)
flags.DEFINE_enum("tuner", "random", ["random", "hyperband", "bayesian"], "keras-tuner oracle.")
flags.DEFINE_integer("max_trials", 10, "Trials at most (hyperband also ends with its brackets).")
flags.DEFINE_integer("score_k", 5, "Importance samples of the validation bound that scores trials.")
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor; --epochs is its budget.")
flags.DEFINE_float("worker_timeout_s", 600, "Longest wait for a silent worker or chief, seconds.")
flags.DEFINE_integer("max_consecutive_failures", 3, "Failed trials in a row that end the search.")
flags.DEFINE_string("model_dir", None, "Ignored: trial I runs in TUNE_DIR/trials/I.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tfvae import train, tuning

    try:
        config = config_lib.from_flags(FLAGS)
        rows = tuning.search(
            config, FLAGS.search, FLAGS.tune_dir, FLAGS.tuner, FLAGS.max_trials, FLAGS.score_k,
            FLAGS.hyperband_factor, FLAGS.worker_timeout_s, FLAGS.max_consecutive_failures,
        )  # fmt: skip
    except train.Stopped as stopped:
        print(stopped, flush=True)
        sys.exit(train.EXIT_STOPPED)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if tuning.role() == "worker":
        print(f"worker done; the chief writes the results to {FLAGS.tune_dir}")
        return
    names = [entry.name for entry in tuning.parse_search(FLAGS.search, config, FLAGS.tuner)]
    print(tuning.results.format_table(rows, names, FLAGS.score_k))
    print(f"written to {FLAGS.tune_dir}: results.csv, results.json, results.md, results.png, "
          "best.flags")  # fmt: skip


if __name__ == "__main__":
    config_lib.define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
