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

  python tools/reproduce.py --flagfile=configs/disentangle_quick.flags   # a study

With --variant (repeated) the plan is a study instead: each variant (the training flags here with
a few changed) trained with each of --seeds, measured (log p(x), bits/dim, every disentanglement
score), its first seed traversed; REPORT.md shows each measure's mean and spread over seeds.
"""

import os
import shlex

from tfvae import config as config_lib
from tfvae.cli import common
from tfvae.evaluation import DEFAULT_CHUNK_SIZE

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
config_lib.define_flags(FLAG_DEFINITIONS)
define.string("output_dir", "runs/reproduce", "Where REPORT.md, runs/, figures/ go.")
define.integer("iwae_k", 5, "k of the IWAE compared with the VAE (section 3.1).")
define.integer("eval_k", 2000, "Importance samples of log p(x) per image.")
define.integer("eval_num_images", 1000, "Validation images of log p(x) (0 = all).")
define.integer("eval_batch_size", 5, "Images per batch of log p(x) on each replica.")
define.integer("chunk_size", DEFAULT_CHUNK_SIZE, "Importance samples decoded at once per image.")
define.integer("quality_num_images", 1000, "Images N in each sample-quality set.")
define.list(
    "quality_temperature", ["1.0", "0.7"], "Prior temperatures T of the sample-quality samples."
)
ALIASES = {
    "eval_examples": "eval_num_images",
    "eval_chunk_size": "chunk_size",
    "quality_samples": "quality_num_images",
    "temperatures": "quality_temperature",
    **config_lib.DEPRECATED_FLAGS,
}
define.integer("classifier_epochs", 10, "Epochs of the built-in factor classifier.")
define.integer("classifier_train_size", 0, "Its training images (0 = all).")
define.enum("fid", "auto", ["auto", "on", "off"], "InceptionV3 FID (auto: if available).")
define.string("inception_weights", "", "No-top InceptionV3 weights file ('' = download).")
define.list("reference_flagfiles", [], "Training flagfiles of runs measured alongside.")
define.string("sampler", "", "A sampler kind (gaussian, gmm, flow) fitted to every run after "
              "training and drawn beside its prior in the figures ('' = none).")  # fmt: skip
define.multi_string(
    "variant",
    [],
    "A study instead of the report: NAME or NAME:FLAG=VALUE,... "
    "(training flags changed from the others), one --variant each.",
)
define.list("seeds", ["0"], "A study's training seeds: each variant is trained with each.")
define.integer("score_num_images", 1000, "A study's scores: validation images (tfvae-latents).")
define.integer("score_points", 200, "A study's beta_vae, factor_vae: batches of 64 faces to "
               "fit on (tfvae-latents).")  # fmt: skip
define.string("readme", "", "Also replace this README's reproduce section with REPORT.md.")
define.string("readme_figures", "docs/figures/reproduce", "Where --readme's figures go.")


def _main(FLAGS) -> int | None:
    from tfvae.experiments import report, reproduce, study
    from tfvae.experiments.plan import Evaluation, Plan
    from tfvae.runtime import files

    temperatures = common.float_list(FLAGS, "quality_temperature", 0.0)
    try:
        evaluation = Evaluation(
            k=FLAGS.eval_k,
            num_images=FLAGS.eval_num_images,
            batch_size=FLAGS.eval_batch_size,
            chunk_size=FLAGS.chunk_size,
            quality_num_images=FLAGS.quality_num_images,
            temperatures=tuple(temperatures),
            classifier_epochs=FLAGS.classifier_epochs,
            classifier_train_size=FLAGS.classifier_train_size,
            fid=FLAGS.fid,
            inception_weights=FLAGS.inception_weights,
            sampler=FLAGS.sampler,
        )
        base = config_lib.from_flags(FLAGS)
        if FLAGS.variant:  # a study: variants x seeds
            scoring = study.Scoring(FLAGS.score_num_images, FLAGS.score_points)
            seeds = common.int_list(FLAGS, "seeds", 0)
            plan = study.StudyPlan(base, FLAGS.output_dir, FLAGS.variant, seeds, evaluation,
                                   scoring)  # fmt: skip
        else:
            plan = Plan(base, FLAGS.output_dir, evaluation, FLAGS.iwae_k, FLAGS.reference_flagfiles)
        with files.DirectoryLock(FLAGS.output_dir, "reproduce"):
            runner = reproduce.Runner(plan)
            runner.run()
            path = os.path.join(FLAGS.output_dir, "REPORT.md")
            command = _command_line(FLAGS.argv)
            write = study.write_page if FLAGS.variant else report.write_report
            write(plan, runner.state, command, path)  # rewritten only if changed
            if FLAGS.readme:
                report.update_readme(FLAGS.readme, path, FLAGS.readme_figures)
    except reproduce.Stopped as stopped:
        raise reproduce.Stopped(f"{stopped}; run the same command again to resume.") from None
    except (RuntimeError, OSError) as error:
        raise common.UsageError(f"{error}") from None
    print(f"{len(runner.ran)} steps run, {len(plan.steps) - len(runner.ran)} already done; "
          f"written to {path}")  # fmt: skip


def _command_line(argv: list[str]) -> str:
    """The command as typed, without the flags that only say where the README goes."""
    args = [a for a in argv[1:] if not a.startswith(("--readme",))]
    return shlex.join(["tfvae-reproduce", *args])


main = common.command(FLAG_DEFINITIONS, _main, __doc__, aliases=ALIASES)


def run() -> None:
    """The `tfvae-reproduce` console script."""
    common.run(main)
