"""Fit a sampler of latent codes to a trained run, drawn instead of the prior by the tools.

  python tools/fit_sampler.py --model_dir=runs/quickstart --sampler=gmm --components=20
  python tools/fit_sampler.py --model_dir=runs/quickstart --sampler=flow
  python tools/fit_sampler.py --model_dir=runs/hierarchical_quick --sampler=gmm --groups=0 \
      --principal_dims=64

Encodes the training images (one draw z ~ q(z|x) each; `gaussian` uses the moments of q(z|x);
for a hierarchy the codes of its top `--groups` latent groups, the top group's alone by default),
fits the density (gaussian: the aggregate posterior's moment-matched Gaussian, its covariance
shrunk with --shrinkage where the codes are few for their latents; gmm: a full-
covariance Gaussian mixture by EM, along the top --principal_dims directions of the codes with a
Gaussian along the rest where given; flow: a masked autoregressive flow) and writes
MODEL_DIR/samplers/NAME/ (sampler.json, parameters.npz). Prints the mean log-density of the
training and validation codes in nats per code (the prior's beside them). Nothing is retrained.
"""

import os

from tfvae.cli import common
from tfvae.samplers import KINDS
from tfvae.samplers.gaussian import check_shrinkage

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.enum("sampler", "gmm", list(KINDS), "The density fitted to the codes.")
define.string("name", "", "Its name under MODEL_DIR/samplers/ ('' = the --sampler kind).")
define.integer("components", 20, "gmm: mixture components.", lower_bound=1)
define.integer(
    "principal_dims", 0, "gmm: fit the mixture along the codes' top P principal directions and a "
    "Gaussian along the rest (0 = the mixture in every direction; for many latents, as a "
    "hierarchy's every group with --groups=0).", lower_bound=0,
)  # fmt: skip
define.integer(
    "sampler_flow_layers", 4, "flow: MADE layers of the sampler (the model's own flow is "
    "--flow_layers, a training setting).", lower_bound=1,
)  # fmt: skip
define.integer(
    "sampler_flow_width", 128, "flow: hidden units per MADE layer of the sampler (the model's "
    "own is --flow_width).", lower_bound=2,
)  # fmt: skip
define.integer(
    "sampler_flow_epochs", 50, "flow: passes over the codes (the best held-out one is kept).",
    lower_bound=1,
)  # fmt: skip
define.integer(
    "num_images", 0, "Training images encoded (0 = those the run trained on).", lower_bound=0
)
define.integer(
    "groups", 1, "A hierarchy's latent groups, counted from the top, whose codes the sampler "
    "fits (0 = every group); the tools draw the groups below from the prior.", lower_bound=0,
)  # fmt: skip
define.string(
    "shrinkage", "0", "gaussian: shrink the covariance of the codes' means towards a scaled "
    "identity by this share in [0, 1], or 'auto' (the Ledoit-Wolf estimate); 0 = exact moments.",
)  # fmt: skip
define.integer("seed", 0, "Seed of the code draws, EM's start and the flow's initialisation.")


def _main(FLAGS) -> int | None:
    from tfvae.samplers import store

    name = FLAGS.name or FLAGS.sampler
    if name != os.path.basename(name) or name.startswith(".") or name == "prior":
        raise common.UsageError(
            f"Flag `--name` is {name!r}; it must be a plain folder name other than 'prior'."
        )
    try:
        shrinkage = check_shrinkage(FLAGS.shrinkage, FLAGS.sampler)
    except ValueError as error:
        raise common.UsageError(str(error)) from None
    if FLAGS.principal_dims and FLAGS.sampler != "gmm":
        raise common.UsageError(
            f"Flag `--principal_dims` is {FLAGS.principal_dims} with --sampler={FLAGS.sampler}; "
            "only the gmm sampler fits along principal directions: pass --sampler=gmm or leave "
            "--principal_dims at 0."
        )
    if FLAGS.sampler == "gmm":
        try:
            import sklearn.mixture  # noqa: F401
        except ImportError:
            raise common.UsageError(
                "--sampler=gmm needs scikit-learn (pip install scikit-learn)."
            ) from None
    config, vae, checkpoint = common.restore(FLAGS)
    try:
        width = store.code_width(vae, FLAGS.groups)
    except ValueError as error:
        raise common.UsageError(str(error)) from None
    if FLAGS.principal_dims > width:
        raise common.UsageError(
            f"Flag `--principal_dims` is {FLAGS.principal_dims}; accepted: 0 (the mixture in "
            f"every direction) to {width} (the latents of this run's codes with "
            f"--groups={FLAGS.groups})."
        )
    train_codes = store.latent_codes(
        config, vae, "train", FLAGS.num_images, FLAGS.seed, FLAGS.groups
    )
    count = len(train_codes["draws"])
    if FLAGS.num_images:
        common.note_capped(FLAGS.num_images, count, "num_images", "train")
    held_out = store.latent_codes(config, vae, "validation", 0, FLAGS.seed + 1, FLAGS.groups)
    print(f"encoded {count} training and {len(held_out['draws'])} validation images "
          f"({width} latents per code)")  # fmt: skip

    def progress(epoch, score):
        epochs = FLAGS.sampler_flow_epochs
        print(f"flow epoch {epoch}/{epochs}: validation codes {score:.3f} nats/code", flush=True)

    sampler, settings = store.fit(
        FLAGS.sampler, train_codes, held_out, FLAGS.seed, FLAGS.components,
        FLAGS.sampler_flow_layers, FLAGS.sampler_flow_width, FLAGS.sampler_flow_epochs, progress,
        shrinkage, FLAGS.principal_dims,
    )  # fmt: skip
    scores = {
        split: store.mean_log_density(sampler, codes["draws"])
        for split, codes in (("train", train_codes), ("validation", held_out))
    }
    # In code units a hierarchy's prior is N(0, I) over every group's latents
    top_prior = vae.code_prior(width)
    prior = store.mean_log_density(top_prior, held_out["draws"])
    scores["validation_under_the_prior"] = prior
    info = store.describe(
        FLAGS.sampler, name, checkpoint, "train", count, FLAGS.seed, settings, scores,
        FLAGS.groups, width,
    )  # fmt: skip
    path = store.save(FLAGS.model_dir, name, sampler, info)
    print(f"{name} ({FLAGS.sampler}): mean log-density of the codes {scores['train']:.3f} "
          f"(train), {scores['validation']:.3f} (validation) nats/code; the model's prior "
          f"({config.prior}) gives the validation codes {prior:.3f}")  # fmt: skip
    print(f"written to {path}")


# --flow_layers and --flow_width are the model's (a flagfile's training settings): no aliases.
ALIASES = {"flow_epochs": "sampler_flow_epochs"}
main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases=ALIASES)


def run() -> None:
    """The `tfvae-fit-sampler` console script."""
    common.run(main)
