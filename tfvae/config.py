"""All hyper-parameters in one frozen dataclass, the absl flags that build it, and its JSON form.

The flags are generated from the dataclass fields, so each one is written once: its default, its
help text (with unit) and, for choices, the accepted values. Only entry points call
`define_flags()` and `from_flags()`; everything below them takes a `Config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any

from tfvae.runtime import files

UPSAMPLINGS = ("deconv", "nearest", "bilinear")
LIKELIHOODS = ("bernoulli", "gaussian", "discretized_logistic", "discretized_logistic_mixture")
MIXED_PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
CROPS = ("realnvp", "center", "none")
PRIORS = ("normal", "mog", "vamp", "flow")  # tfvae.models.priors builds each
POSTERIORS = ("diagonal", "iaf")  # tfvae.models.posteriors
ARCHITECTURES = ("dcgan", "hierarchical")  # tfvae.models.networks, tfvae.models.hierarchy
LEARNING_RATE_SCHEDULES = ("constant", "cosine")  # tfvae.training.steps.learning_rate_schedule
OBJECTIVES = ("vae", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")  # training.disentangle

DEPRECATED_FLAGS = {"sample_temperature": "temperature"}  # old flag or config.json key -> new

# Fields whose default changed, or that were added with a default other than the behaviour before
# them: a config.json saved without the field was trained with this value, so `load` restores it.
LEGACY_VALUES = {"likelihood_scale_floor": 1e-3}

# Fields that control how long or how verbosely a run goes, not what it computes: a resumed run
# may change them without being refused (e.g. training a finished run for more epochs).
RUN_CONTROL_FIELDS = (
    "epochs",
    "log_every_steps",
    "images_every_epochs",
    "checkpoints_to_keep",
    "temperature",
    "collective_timeout_s",
)

# Training controls a resumed run may change: they change the objective from that step on, not
# the model (validation and evaluation always estimate the model's own log p(x) and bounds).
# Unlike the fields above they do change what a run computes (a search may tune them).
TRAINING_CONTROL_FIELDS = (
    "kl_weight",
    "kl_warmup_steps",
    "free_bits",
    "clip_gradient_norm",
    "tc_weight",
    "dip_weight",
)
RESUMABLE_FIELDS = RUN_CONTROL_FIELDS + TRAINING_CONTROL_FIELDS  # may differ on resume


def _field(default, help_text: str, choices: tuple[str, ...] | None = None):
    return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; saved as `model_dir/config.json`."""

    # Data.
    dataset: str = _field(
        "builtin", "Dataset: 'builtin' (offline synthetic faces), 'celeb_a' or 'folder:PATH'."
    )
    data_dir: str = _field("", "Where datasets are cached or found ('' = ~/.cache/tfvae).")
    image_size: int = _field(64, "Side of the square images in pixels (a power of two >= 8).")
    crop: str = _field(
        "realnvp",
        "Crop of 178x218 CelebA images before resizing: realnvp = the 148x148 box at x=15, "
        "y=40 (Real NVP, NVAE); center = a centred 148x148 box; none. Ignored by builtin.",
        CROPS,
    )
    train_size: int = _field(0, "Training examples used, a deterministic subset (0 = all).")
    val_size: int = _field(0, "Validation examples used, a deterministic subset (0 = all).")
    # Model.
    architecture: str = _field(
        "dcgan", "dcgan = the report's symmetric conv VAE (one latent vector); hierarchical = a "
        "bottom-up encoder and a top-down decoder with latent groups at several resolutions "
        "(docs/model.md).", ARCHITECTURES,
    )  # fmt: skip
    latent_groups: str = _field(
        "4:1,8:2,16:2", "hierarchical: latent groups per resolution, 'R:N,...' top down "
        "(resolutions powers of two below --image_size)."
    )  # fmt: skip
    latent_channels: int = _field(8, "hierarchical: latent channels per position of every group.")
    residual_cells: int = _field(
        2, "hierarchical: residual cells per resolution bottom-up, and top-down at resolutions "
        "without groups (each group has its own)."
    )  # fmt: skip
    upsampling: str = _field("deconv", "Decoder upsampling block (dcgan).", UPSAMPLINGS)
    likelihood: str = _field("discretized_logistic", "Pixel likelihood p(x|z).", LIKELIHOODS)
    gaussian_scale: float = _field(
        0.0, "Fixed std of the gaussian likelihood in [0,1] pixel units (0 = learned per pixel)."
    )
    likelihood_scale_floor: float = _field(
        4.5e-4, "Smallest learned scale of the pixel likelihood (discretized logistic, its "
        "mixture, a learned gaussian) in [0,1] pixel units. 4.5e-4, PixelCNN++'s clamp of the "
        "log-scale at -7 in [-1, 1] units, caps a sharp discretized logistic's probability of "
        "one level at 0.975 (0.037 bits/dim at best); 1e-3 at 0.753 (0.41 bits/dim).",
    )  # fmt: skip
    mixture_components: int = _field(
        10, "Logistic components per pixel of --likelihood=discretized_logistic_mixture."
    )
    mixture_head_channels: int = _field(
        0, "dcgan with --likelihood=discretized_logistic_mixture: if > 0, the last upsampling "
        "block emits this many channels (then batch norm and ReLU) and a 1x1 convolution maps "
        "them to the mixture's 10 M parameters per pixel, fewer FLOPs at 64x64 but a weaker "
        "model (32 channels cost 0.41 bits/dim on the built-in faces, docs/benchmarks.md); "
        "0: the last block emits the parameters itself.",
    )  # fmt: skip
    width: int = _field(64, "Channels of the first encoder stage; doubles every stage.")
    latent_dim: int = _field(128, "Size of the latent code z.")
    kernel_size: int = _field(4, "Convolution kernel size of every stage.")
    posterior_scale_floor: float = _field(1e-4, "Smallest std of q(z|x) (latent units).")
    prior: str = _field(
        "normal", "p(z): normal = N(0, I); mog = a learned mixture of diagonal Gaussians; vamp = "
        "the VampPrior (learned pseudo-images); flow = a masked autoregressive flow on N(0, I).",
        PRIORS,
    )  # fmt: skip
    prior_components: int = _field(
        10, "Components of the mog prior; pseudo-images of the vamp prior."
    )
    posterior: str = _field(
        "diagonal", "q(z|x): diagonal = a diagonal Gaussian; iaf = an inverse autoregressive "
        "flow on it, conditioned on the encoder's features.", POSTERIORS,
    )  # fmt: skip
    flow_layers: int = _field(2, "MADE layers of --prior=flow and steps of --posterior=iaf.")
    flow_width: int = _field(
        128, "Hidden units per MADE layer of --prior=flow and --posterior=iaf."
    )
    # Objective and optimisation.
    k: int = _field(5, "Importance samples per example: 1 = VAE (ELBO), >1 = IWAE bound.")
    batch_size: int = _field(128, "Global batch size in images, split across replicas.")
    epochs: int = _field(200, "Passes over the training set.")
    learning_rate: float = _field(2e-4, "Adam learning rate (the peak of a schedule).")
    learning_rate_schedule: str = _field(
        "constant", "constant = --learning_rate throughout; cosine = from --learning_rate down "
        "to 0 at the run's last step (--epochs x steps per epoch; more epochs on resume stretch "
        "the rest of the curve).", LEARNING_RATE_SCHEDULES,
    )  # fmt: skip
    beta_1: float = _field(0.5, "Adam beta_1 (momentum).")
    beta_2: float = _field(0.999, "Adam beta_2.")
    seed: int = _field(0, "Seed of every random choice: data order, sampling, initialisation.")
    kl_weight: float = _field(
        1.0, "Training only: weight beta of log p(z) - log q(z|x) in each log-weight (1 = the "
        "bound)."
    )  # fmt: skip
    kl_warmup_steps: int = _field(
        0, "Training only: steps over which the KL weight grows linearly from 0 to --kl_weight."
    )
    free_bits: float = _field(
        0.0, "Training only: floor (nats) on each latent dimension's KL of each example (0 = off)."
    )
    clip_gradient_norm: float = _field(
        0.0, "Training only: scale the global gradient down to this norm when above it (0 = off)."
    )
    skip_gradient_norm: float = _field(
        0.0, "Training only: skip an update whose global gradient norm exceeds this or is not "
        "finite, counted as skipped_updates (0 = off; VDVAE's guard)."
    )  # fmt: skip
    objective: str = _field(
        "vae", "Training only: vae = the ELBO/IWAE bound (with --kl_weight: beta-VAE); "
        "beta_tcvae = the bound minus (--tc_weight - 1) x the total correlation of q(z) (Chen et "
        "al. 2018, minibatch-stratified estimator); factor_vae = the bound minus --tc_weight x a "
        "discriminator's estimate of the total correlation (Kim and Mnih 2018); dip_vae_i / "
        "dip_vae_ii = the bound minus --dip_weight x the covariance of the encoder's means / of "
        "q(z)'s away from I (Kumar et al. 2018). dcgan with --posterior=diagonal only "
        "(docs/disentanglement.md).", OBJECTIVES,
    )  # fmt: skip
    tc_weight: float = _field(
        6.0, "Training only: beta of --objective=beta_tcvae (1 = the bound), gamma of "
        "--objective=factor_vae."
    )  # fmt: skip
    dip_weight: float = _field(
        10.0, "Training only: lambda_od of --objective=dip_vae_i/ii, the weight of the squared "
        "off-diagonal covariances; the diagonal's is 10 lambda_od (i) or lambda_od (ii), as "
        "disentanglement_lib's."
    )  # fmt: skip
    discriminator_units: int = _field(
        1000, "--objective=factor_vae: hidden units of each of the discriminator's 6 layers."
    )
    discriminator_learning_rate: float = _field(
        1e-4, "--objective=factor_vae: the discriminator's Adam learning rate (beta_1 0.5, "
        "beta_2 0.9, as disentanglement_lib's)."
    )  # fmt: skip
    ema_decay: float = _field(
        0.0, "Decay of an exponential moving average of the weights, used for validation, "
        "evaluation, figures and export (0 = off; e.g. 0.999)."
    )  # fmt: skip
    # Execution.
    mixed_precision: str = _field(
        "auto",
        "Layer compute dtype; auto = mixed_float16 on a GPU with compute capability >= 7.0, "
        "else float32. Log-probabilities are always float32.",
        MIXED_PRECISIONS,
    )
    strategy: str = _field(
        "auto",
        "tf.distribute strategy; auto = multi_worker when TF_CONFIG lists several tasks, else "
        "mirrored when several GPUs are visible, else default (one device).",
        STRATEGIES,
    )
    collective_timeout_s: int = _field(
        300,
        "Seconds an all-reduce waits for the other workers before the run stops with an error "
        "(multi_worker; a crashed worker is also noticed by TensorFlow's heartbeats, ~10 s).",
    )
    jit_compile: bool = _field(False, "Compile the train and eval steps with XLA.")
    # Run control.
    log_every_steps: int = _field(20, "Steps between scalar summaries and progress updates.")
    images_every_epochs: int = _field(1, "Epochs between image summaries.")
    temperature: float = _field(
        1.0,
        "Temperature T of the prior samples in image summaries (z ~ N(0, T^2 I) for the "
        "prior N(0, I); docs/model.md for the learned priors).",
    )
    checkpoints_to_keep: int = _field(3, "Checkpoints kept in model_dir.")

    def __post_init__(self):
        for error in _errors(self):
            raise ValueError(error)

    @property
    def num_dims(self) -> int:
        """D = H * W * C = image_size**2 * 3: the dimensions bits/dim counts (a property, not a
        field: neither a flag nor saved in config.json)."""
        return self.image_size**2 * 3

    @property
    def num_stages(self) -> int:
        """Stride-2 stages between the image and the 4x4 feature map."""
        return int(math.log2(self.image_size // 4))

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _errors(c: Config):
    """Yields one line per invalid field."""
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if f.metadata["choices"] and value not in f.metadata["choices"]:
            yield (f"Flag `--{f.name}` is {value!r}; accepted: {', '.join(f.metadata['choices'])}.")
    positive = ("width", "latent_dim", "kernel_size", "k", "batch_size", "epochs")
    positive += ("mixture_components", "prior_components", "flow_layers", "flow_width")
    positive += ("latent_channels", "residual_cells", "discriminator_units")
    counts = ("log_every_steps", "images_every_epochs", "checkpoints_to_keep")
    for name in positive + counts + ("collective_timeout_s",):
        if getattr(c, name) < 1:
            yield f"Flag `--{name}` is {getattr(c, name)}; it must be an integer >= 1."
    size = c.image_size
    if size < 8 or size & (size - 1):
        yield f"Flag `--image_size` is {size}; it must be a power of two >= 8 (8, 16, 32, 64, ...)."
    for name in ("train_size", "val_size"):
        if getattr(c, name) < 0:
            yield f"Flag `--{name}` is {getattr(c, name)}; it must be >= 0 (0 = all)."
    if not c.learning_rate > 0:
        yield f"Flag `--learning_rate` is {c.learning_rate}; it must be > 0."
    for name in ("beta_1", "beta_2"):
        if not 0 <= getattr(c, name) < 1:
            yield f"Flag `--{name}` is {getattr(c, name)}; it must be in [0, 1)."
    if c.kl_weight < 0:
        yield f"Flag `--kl_weight` is {c.kl_weight}; it must be >= 0."
    if c.kl_warmup_steps < 0:
        yield f"Flag `--kl_warmup_steps` is {c.kl_warmup_steps}; it must be >= 0 (0 = off)."
    if c.free_bits < 0:
        yield f"Flag `--free_bits` is {c.free_bits}; it must be >= 0 (0 = off)."
    if c.free_bits > 0 and (c.prior, c.posterior) != ("normal", "diagonal"):
        yield (f"Flag `--free_bits` is {c.free_bits} with --prior={c.prior} --posterior="
               f"{c.posterior}; free bits need the per-dimension KL of --prior=normal and "
               "--posterior=diagonal.")  # fmt: skip
    for name in ("clip_gradient_norm", "skip_gradient_norm"):
        if getattr(c, name) < 0:
            yield f"Flag `--{name}` is {getattr(c, name)}; it must be >= 0 (0 = off)."
    for name in ("tc_weight", "dip_weight"):
        if getattr(c, name) < 0:
            yield f"Flag `--{name}` is {getattr(c, name)}; it must be >= 0."
    if not c.discriminator_learning_rate > 0:
        yield (f"Flag `--discriminator_learning_rate` is {c.discriminator_learning_rate}; it "
               "must be > 0.")  # fmt: skip
    if c.objective in ("beta_tcvae", "factor_vae") and c.batch_size < 2:
        yield (f"Flag `--batch_size` is {c.batch_size} with --objective={c.objective}; it must "
               "be >= 2 (the total correlation is estimated across the batch).")  # fmt: skip
    if c.objective != "vae" and c.posterior != "diagonal":
        yield (f"Flag `--objective={c.objective}` is refused with --posterior={c.posterior}; "
               "accepted: --posterior=diagonal (its estimators need q(z|x)'s per-dimension "
               "densities or moments).")  # fmt: skip
    if not 0 <= c.ema_decay < 1:
        yield f"Flag `--ema_decay` is {c.ema_decay}; it must be in [0, 1) (0 = off)."
    if not c.temperature > 0:
        yield f"Flag `--temperature` is {c.temperature}; it must be > 0."
    if c.gaussian_scale < 0:
        yield f"Flag `--gaussian_scale` is {c.gaussian_scale}; it must be >= 0 (0 = learned)."
    if c.mixture_head_channels < 0:
        yield (f"Flag `--mixture_head_channels` is {c.mixture_head_channels}; it must be >= 0 "
               "(0 = none).")  # fmt: skip
    if not c.likelihood_scale_floor > 0:
        yield f"Flag `--likelihood_scale_floor` is {c.likelihood_scale_floor}; it must be > 0."
    if not c.posterior_scale_floor > 0:
        yield f"Flag `--posterior_scale_floor` is {c.posterior_scale_floor}; it must be > 0."
    if c.architecture == "hierarchical":
        yield from _hierarchy_errors(c)
    if not (c.dataset in ("builtin", "celeb_a") or c.dataset.startswith("folder:")):
        yield f"Flag `--dataset` is {c.dataset!r}; accepted: builtin, celeb_a, folder:PATH."


def parse_latent_groups(spec: str, image_size: int) -> list[tuple[int, int]]:
    """'4:1,8:2,16:2' -> [(4, 1), (8, 2), (16, 2)]: (resolution, groups), top down.

    Raises ValueError (one line) unless the resolutions are powers of two, increasing, below
    image_size, and each has >= 1 group.
    """
    accepted = "accepted: 'R:N,...' with resolutions R powers of two, increasing, below the image"
    try:
        pairs = [tuple(int(v) for v in item.split(":")) for item in spec.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
    except ValueError:
        raise ValueError(f"Flag `--latent_groups` is {spec!r}; {accepted}.") from None
    resolutions = [r for r, _ in pairs]
    valid = all(r >= 1 and r & (r - 1) == 0 and r < image_size for r in resolutions)
    valid &= resolutions == sorted(set(resolutions)) and all(n >= 1 for _, n in pairs)
    if not valid:
        raise ValueError(
            f"Flag `--latent_groups` is {spec!r} for --image_size={image_size}; {accepted} "
            "(size), each with N >= 1 groups, e.g. '4:1,8:2,16:2'."
        )
    return pairs


def _hierarchy_errors(c: Config):
    """Lines for the fields --architecture=hierarchical refuses or cannot parse."""
    try:
        parse_latent_groups(c.latent_groups, c.image_size)
    except ValueError as error:
        yield str(error)
    if c.width < 8 or c.width % 2:
        yield (f"Flag `--width` is {c.width} with --architecture=hierarchical; it must be even "
               "and >= 8.")  # fmt: skip
    for name, default in (("prior", "normal"), ("posterior", "diagonal")):
        if getattr(c, name) != default:
            yield (
                f"Flag `--{name}` is {getattr(c, name)!r} with --architecture=hierarchical; "
                f"accepted: {default} (the hierarchy's prior and posterior are its groups')."
            )
    if c.free_bits:
        yield (f"Flag `--free_bits` is {c.free_bits} with --architecture=hierarchical; accepted: "
               "0 (use --kl_warmup_steps).")  # fmt: skip
    if c.objective != "vae":
        yield (f"Flag `--objective={c.objective}` is refused with --architecture=hierarchical; "
               "accepted: vae (the hierarchy's groups are dependent under its own prior, so "
               "there is no factorised code whose total correlation to penalise).")  # fmt: skip


def define_flags(flag_values=None) -> None:
    """Defines one absl flag per Config field (call once, from an entry point).

    The flags are registered as the main program's own, so its `--help` lists them.
    `flag_values` defaults to absl's global FLAGS.
    """
    from absl import flags

    for f in dataclasses.fields(Config):
        kwargs = dict(
            name=f.name,
            default=f.default,
            help=f.metadata["help"],
            module_name=sys.argv[0],
            flag_values=flag_values if flag_values is not None else flags.FLAGS,
        )
        if f.metadata["choices"]:
            flags.DEFINE_enum(enum_values=list(f.metadata["choices"]), **kwargs)
        elif f.type in (bool, "bool"):
            flags.DEFINE_bool(**kwargs)
        elif f.type in (int, "int"):
            flags.DEFINE_integer(**kwargs)
        elif f.type in (float, "float"):
            flags.DEFINE_float(**kwargs)
        else:
            flags.DEFINE_string(**kwargs)


def from_flags(flag_values) -> Config:
    """Builds a Config from parsed absl flags; raises ValueError naming the first bad value."""
    return Config(**{f.name: flag_values[f.name].value for f in dataclasses.fields(Config)})


def save(config: Config, path: str) -> None:
    """Writes config as JSON atomically (a crash never leaves a half-written file)."""
    files.write_atomically(path, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def load(path: str) -> Config:
    """Reads a Config written by `save`; unknown keys are an error, missing keys take defaults
    (LEGACY_VALUES where the value a run was trained with differs from today's default).

    Raises ValueError (one line) naming the file when it is not valid JSON or not a Config.
    """
    try:
        values = files.read_json(path)
    except ValueError as error:
        raise ValueError(
            f"{error} The run in {os.path.dirname(path) or '.'} cannot be restored "
            "from it; fix the file or train into a new --model_dir."
        ) from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds no JSON object; the run cannot be restored from it.")
    for old, new in DEPRECATED_FLAGS.items():  # configs saved before a field was renamed
        if old in values and new not in values:
            values[new] = values.pop(old)
    for name, value in LEGACY_VALUES.items():
        values.setdefault(name, value)
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path} has unknown fields {unknown}; accepted: {sorted(known)}.")
    return Config(**values)


def to_flags(config: Config, extra: dict | None = None) -> list[str]:
    """`--field=value` for every field of `config`, then for `extra` (e.g. {"model_dir": ...})."""
    items = list(config.to_dict().items()) + list((extra or {}).items())
    return [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in items]


def to_flagfile(config: Config, extra: dict | None = None, header: str = "") -> str:
    """The flagfile text that trains `config` (`to_flags`, one a line); `header` lines become
    comments. Read back by `--flagfile=` of any command."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    return "\n".join(lines + to_flags(config, extra)) + "\n"


def differences(saved: Config, requested: Config, ignore=RUN_CONTROL_FIELDS) -> list[str]:
    """Lines 'field: saved -> requested' for every field that differs, except `ignore`."""
    lines = []
    for f in dataclasses.fields(Config):
        a, b = getattr(saved, f.name), getattr(requested, f.name)
        if a != b and f.name not in ignore:
            lines.append(f"{f.name}: {a!r} (saved) vs {b!r} (requested)")
    return lines
