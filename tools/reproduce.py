"""Every experiment of the report (sections 2-4) from one command, resumable, into REPORT.md.

  python tools/reproduce.py --flagfile=configs/reproduce_quick.flags    # built-in faces, CPU
  python tools/reproduce.py --flagfile=configs/reproduce_celeba.flags   # CelebA 64x64, GPU

Trains one model per decoder upsampling (deconv, nearest, bilinear) with the training flags
given here, and a VAE (k=1) and an IWAE (k=--iwae_k) with the deconvolution decoder (a run
whose settings match is trained once); measures every model (log p(x) with --eval_k samples,
bits/dim, active units, checkerboard, sample quality); draws the figures; exports the best model;
and writes OUTPUT_DIR/REPORT.md. Each step is a package command run as a child process and shown
with its progress; finished steps are skipped when the command is run again, and Ctrl-C (or
SIGTERM) stops the running step resumably (exit code 75).
"""

import os
import shlex
import sys

from absl import app, flags

from tfvae import config as config_lib

flags.DEFINE_string("output_dir", "runs/reproduce", "Where REPORT.md, runs/, figures/ go.")
flags.DEFINE_integer("iwae_k", 5, "k of the IWAE compared with the VAE (section 3.1).")
flags.DEFINE_integer("eval_k", 2000, "Importance samples of log p(x) per image.")
flags.DEFINE_integer("eval_examples", 1000, "Validation images of log p(x) (0 = all).")
flags.DEFINE_integer("eval_batch_size", 5, "Images per batch of log p(x).")
flags.DEFINE_integer("eval_chunk_size", 200, "Samples decoded at once per image.")
flags.DEFINE_integer("quality_samples", 1000, "Images N in each sample-quality set.")
flags.DEFINE_list("temperatures", ["1.0", "0.7"], "Prior temperatures of the samples.")
flags.DEFINE_integer("classifier_epochs", 10, "Epochs of the built-in factor classifier.")
flags.DEFINE_integer("classifier_train_size", 0, "Its training images (0 = all).")
flags.DEFINE_enum("fid", "auto", ["auto", "on", "off"], "InceptionV3 FID (auto: if available).")
flags.DEFINE_string("inception_weights", "", "No-top InceptionV3 weights file ('' = download).")
flags.DEFINE_list("reference_flagfiles", [], "Training flagfiles of runs measured alongside.")
flags.DEFINE_string("readme", "", "Also replace this README's reproduce section with REPORT.md.")
flags.DEFINE_string("readme_figures", "docs/figures/reproduce", "Where --readme's figures go.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tfvae import report, reproduce

    try:
        temperatures = [float(t) for t in FLAGS.temperatures]
    except ValueError:
        sys.exit(f"error: Flag `--temperatures` is {FLAGS.temperatures}; each must be a number.")
    try:
        evaluation = reproduce.Evaluation(
            k=FLAGS.eval_k,
            num_examples=FLAGS.eval_examples,
            batch_size=FLAGS.eval_batch_size,
            chunk_size=FLAGS.eval_chunk_size,
            quality_samples=FLAGS.quality_samples,
            temperatures=tuple(temperatures),
            classifier_epochs=FLAGS.classifier_epochs,
            classifier_train_size=FLAGS.classifier_train_size,
            fid=FLAGS.fid,
            inception_weights=FLAGS.inception_weights,
        )
        plan = reproduce.Plan(
            config_lib.from_flags(FLAGS),
            FLAGS.output_dir,
            evaluation,
            FLAGS.iwae_k,
            FLAGS.reference_flagfiles,
        )
        runner = reproduce.Runner(plan)
        runner.run()
    except reproduce.Stopped as stopped:
        print(f"{stopped}; run the same command again to resume.", flush=True)
        sys.exit(reproduce.EXIT_STOPPED)
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f"error: {error}")
    path = os.path.join(FLAGS.output_dir, "REPORT.md")
    report.write_report(plan, runner.state, _command_line(), path)  # rewritten only if changed
    if FLAGS.readme:
        report.update_readme(FLAGS.readme, path, FLAGS.readme_figures)
    print(f"{len(runner.ran)} steps run, {len(plan.steps) - len(runner.ran)} already done; "
          f"written to {path}")  # fmt: skip


def _command_line() -> str:
    """The command as typed, without the flags that only say where the README goes."""
    args = [a for a in sys.argv[1:] if not a.startswith(("--readme",))]
    return shlex.join(["python", "tools/reproduce.py", *args])


if __name__ == "__main__":
    config_lib.define_flags()
    app.run(main)
