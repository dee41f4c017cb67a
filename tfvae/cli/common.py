"""What every command shares: flag parsing, training flags from shared flagfiles, one-line errors.

Each command module defines its flags on its own FlagValues and a body taking the parsed flags;
`command(...)` turns them into `main(argv) -> exit code`, callable in process (tests) and as a
console script (`run`). Errors reach the user as one line on stderr with exit code 1, a stop
(SIGINT/SIGTERM) as its line with exit code 75; nothing is written before the flags are checked.

Flagfiles are shared between commands: in any command but training, a flag of a --flagfile that
names a training setting (a Config field, `--max_steps`, `--export`) describes the run rather
than the command. Those settings are compared with MODEL_DIR/config.json (a difference is
refused), while `--model_dir` and the command's own other flags are read as usual. So
`tfvae-bpp --flagfile=configs/iwae.flags` evaluates the run that flagfile trains, with bpp's own
K, never the training's `--k`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import sys
from collections.abc import Callable

from absl import flags

from tfvae import config as config_lib
from tfvae.runtime import files, stopping

EXIT_ERROR = 1


class UsageError(ValueError):
    """A bad command line: its message is the one line the user sees."""


class _Exit(Exception):  # noqa: N818 (control flow: --help)
    def __init__(self, code: int):
        self.code = code


@dataclasses.dataclass
class Parsed:
    """Parsed flags (`values`) and the training settings named in flagfiles or on the command
    line of a command that does not train (`training`, name -> parsed value)."""

    values: flags.FlagValues
    training: dict
    argv: list[str]

    def __getattr__(self, name):
        return getattr(self.values, name)

    def __getitem__(self, name):
        return self.values[name]


# ------------------------------------------------------------------------------------ parsing


def _flagfile_args(path: str, seen: tuple = ()) -> list[str]:
    """The flags of a flagfile, one per line, nested --flagfile lines expanded."""
    if path in seen:
        raise UsageError(f"Flag `--flagfile={path}` includes itself.")
    try:
        with open(path) as f:
            lines = [line.strip() for line in f]
    except OSError as error:
        raise UsageError(f"Flag `--flagfile` is {path!r}: {error.strerror}.") from None
    args = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("--flagfile="):
            args += _flagfile_args(line.split("=", 1)[1], (*seen, path))
        else:
            args.append(line)
    return args


def _flag_name(arg: str) -> str | None:
    """'k' for '--k=5', 'export' for '--noexport'; None for a positional argument."""
    match = re.match(r"--?([A-Za-z0-9_]+)", arg)
    return match.group(1) if match and arg.startswith("-") else None


def define_training_flags(flag_values: flags.FlagValues) -> None:
    """The training settings: one flag per Config field, then `--max_steps` and `--export`."""
    config_lib.define_flags(flag_values)
    define = _Definer(flag_values)
    define.integer("max_steps", None, "Stop after this many steps in total (resumable).")
    define.bool(
        "export", False, "After the last epoch, export a SavedModel to MODEL_DIR/export/<next>/."
    )


def training_flag_values() -> flags.FlagValues:
    """Fresh FlagValues holding only the training settings (what a shared flagfile names)."""
    flag_values = flags.FlagValues()
    define_training_flags(flag_values)
    return flag_values


def _accepted(flag) -> str:
    parser = flag.parser
    kind = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
        parser.flag_type(), "a " + parser.flag_type().replace("multi ", "")
    )
    if getattr(parser, "enum_values", None):
        return ", ".join(parser.enum_values)
    low, high = getattr(parser, "lower_bound", None), getattr(parser, "upper_bound", None)
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def _parse_into(fv: flags.FlagValues, args: list[str], program: str) -> None:
    try:
        fv([program, *args])
    except flags.UnrecognizedFlagError as error:
        raise UsageError(
            f"Flag `--{error.flagname}` is not a flag of {os.path.basename(program)}; see --help."
        ) from None
    except flags.IllegalFlagValueError as error:
        match = re.match(r"flag --(\w+)=(.*?): (.*)", str(error), re.S)
        if match and match.group(1) in fv:
            name, value = match.group(1), match.group(2)
            if value == "None" and fv[name].default is None:
                raise UsageError(f"Flag `--{name}` is required.") from None
            raise UsageError(
                f"Flag `--{name}` is {value!r}; accepted: {_accepted(fv[name])}."
            ) from None
        raise UsageError(str(error).splitlines()[0]) from None
    except flags.Error as error:
        raise UsageError(str(error).splitlines()[0]) from None
    _refuse_empty_lists(fv)


def _refuse_empty_lists(fv: flags.FlagValues) -> None:
    """A list flag given empty (`--model_dirs=`) is refused in one line, unless an empty list
    is its default (then empty means the default, as for `--dims`)."""
    for name in fv:
        flag = fv[name]
        if not isinstance(flag.parser, flags.BaseListParser) or flag.value != []:
            continue
        if flag.present and flag.default != []:
            default = f" (without it: {','.join(flag.default)})" if flag.default else ""
            raise UsageError(
                f"Flag `--{name}` is empty; accepted: one or more comma-separated values{default}."
            )


def parse(
    argv: list[str],
    definitions: flags.FlagValues,
    doc: str = "",
    reads_run: bool = False,
    aliases: dict[str, str] | None = None,
) -> Parsed:
    """Parses `argv` (argv[0] the program) into fresh FlagValues.

    Args:
      definitions: the command's flags, unparsed (a copy is parsed).
      reads_run: the command reads a trained run (--model_dir): training settings in its
        flagfiles and command line are collected into `Parsed.training`, not parsed as its own.
      aliases: deprecated flag name -> current name (a warning line says so).
    """
    program, *args = argv
    aliases = {**config_lib.DEPRECATED_FLAGS, **(aliases or {})}
    fv = copy.deepcopy(definitions)
    if any(a in ("--help", "-h", "--helpfull", "-?") for a in args):
        print(doc.strip() + "\n\nflags:\n" + fv.get_help(include_special_flags=False))
        raise _Exit(0)
    training_fv = training_flag_values() if reads_run else None
    own, training_args = [], []
    for arg, from_file in _expanded(args):
        name = _flag_name(arg)
        training = _base_name(name, training_fv) if name and training_fv else None
        if name in aliases and not (from_file and training in training_fv):
            print(f"warning: --{name} is deprecated; use --{aliases[name]}.", file=sys.stderr)
            arg, name = arg.replace(f"-{name}", f"-{aliases[name]}", 1), aliases[name]
            training = _base_name(name, training_fv) if training_fv else None
        # A training setting describes the run: always from a flagfile, on the command line
        # unless the command has a flag of that name itself (bpp's --k, --seed).
        describes_run = training in (training_fv or ()) and training != "model_dir"
        if describes_run and (from_file or _base_name(name, fv) not in fv):
            training_args.append(arg)
        else:
            own.append(arg)
    _parse_into(fv, own, program)
    training = {}
    if training_args:
        _parse_into(training_fv, training_args, program)
        given = {_base_name(_flag_name(a), training_fv) for a in training_args}
        training = {name: training_fv[name].value for name in given}
    return Parsed(fv, training, [program, *args])


def _base_name(name: str, fv) -> str:
    """The flag `name` sets in `fv`: 'export' for 'noexport' (absl's negated booleans)."""
    return name[2:] if name not in fv and name.startswith("no") and name[2:] in fv else name


def _expanded(args: list[str]):
    """(arg, came_from_a_flagfile) for every argument, flagfiles expanded in place."""
    for arg in args:
        if arg.startswith("--flagfile="):
            for inner in _flagfile_args(arg.split("=", 1)[1]):
                yield inner, True
        else:
            yield arg, False


# ------------------------------------------------------------------------------- the run


def check_training_settings(parsed: Parsed, config) -> None:
    """Refuses training settings (from a shared flagfile) that differ from the run's config."""
    requested = {
        k: v for k, v in parsed.training.items() if k in config.to_dict() and k != "model_dir"
    }
    differing = [
        f"--{k}={v} (given) vs {getattr(config, k)!r} (the run's config.json)"
        for k, v in sorted(requested.items())
        if getattr(config, k) != v and k not in config_lib.RUN_CONTROL_FIELDS + ("data_dir",)
    ]
    if differing:
        raise UsageError(
            f"--model_dir={parsed.model_dir} was trained with other settings: "
            f"{'; '.join(differing)}."
        )


def restore(parsed: Parsed, **kwargs):
    """(config, vae, checkpoint) of --model_dir, its training settings checked; ValueError with
    one line when the directory is no run, has no checkpoint, or was trained otherwise."""
    from tfvae.models import vae as model

    config, vae, checkpoint = model.restore(parsed.model_dir, **kwargs)
    check_training_settings(parsed, config)
    return config, vae, checkpoint


def int_list(parsed: Parsed, name: str, low: int | None = None, high: int | None = None) -> list:
    """The integers of list flag `--name`, each in [low, high) (one line naming a bad one)."""
    return _numbers(parsed, name, int, "integers", low, high)


GROUP_HELP = (
    "A hierarchy's latent group, top down: 0 = the top (the default), -1 = every group; "
    "a one-group model's code is its group 0."
)


def group_slice(parsed: Parsed, vae) -> tuple[int, int]:
    """[start, stop) of flag `--group` in the model's flat code (`group_slices`; -1: all)."""
    slices = vae.group_slices()
    group = parsed.values["group"].value
    if group == -1:
        return 0, vae.latent_dim
    if not 0 <= group < len(slices):
        raise UsageError(
            f"Flag `--group` is {group}; accepted: -1 (every group) or 0 to {len(slices) - 1} "
            "(this run's latent groups, top down)."
        )
    return slices[group]


def float_list(parsed: Parsed, name: str, low: float | None = None) -> list:
    """The numbers of list flag `--name`, each > low when given."""
    return _numbers(parsed, name, float, "numbers", low, None, strict=True)


def temperature_list(parsed: Parsed, name: str) -> list:
    """The temperatures of list flag `--name`: each entry a number T > 0, or T1:T2:... (one per
    latent group of a hierarchy, top down) as a tuple."""
    values = []
    for entry in parsed.values[name].value or []:
        try:
            parts = tuple(float(v) for v in entry.split(":"))
        except ValueError:
            raise UsageError(
                f"Flag `--{name}` has {entry!r}; accepted: numbers T > 0, or T1:T2:... with one "
                "T per latent group, top down."
            ) from None
        if min(parts) <= 0:
            shown = ":".join(map(str, parts))
            raise UsageError(f"Flag `--{name}` has {shown}; each T must be > 0.")
        values.append(parts if len(parts) > 1 else parts[0])
    return values


def _numbers(parsed, name, kind, word, low, high, strict=False):
    raw = parsed.values[name].value or []
    try:
        values = [kind(v) for v in raw]
    except ValueError:
        raise UsageError(
            f"Flag `--{name}` is {','.join(raw)!r}; accepted: comma-separated {word}."
        ) from None
    for v in values:
        too_low = low is not None and (v <= low if strict else v < low)
        if too_low or (high is not None and v >= high):
            bounds = (
                (f"> {low}" if strict else f">= {low}") if high is None else f"in [{low}, {high})"
            )
            raise UsageError(f"Flag `--{name}` has {v}; each must be {bounds}.")
    return values


def note_capped(asked: int, used: int, flag: str, what: str) -> None:
    """One line when a split had fewer images than `--flag` asked for (0 asks for all)."""
    if asked and used < asked:
        print(f"note: --{flag}={asked}, but {what} has {used}; using {used}.")


# ------------------------------------------------------------------------------ commands

_ERRORS = (
    ValueError,  # UsageError included
    FileNotFoundError,
    NotImplementedError,
    FloatingPointError,
    files.DiskFullError,
    files.LockHeldError,
)


def command(
    definitions: flags.FlagValues,
    body: Callable[[Parsed], int | None],
    doc: str = "",
    reads_run: bool = False,
    aliases: dict[str, str] | None = None,
) -> Callable[[list[str] | None], int]:
    """`main(argv) -> exit code` of a command: parse, run `body`, one line per failure."""

    def main(argv: list[str] | None = None) -> int:
        argv = list(sys.argv if argv is None else argv)
        try:
            parsed = parse(argv, definitions, doc, reads_run, aliases)
            return int(body(parsed) or 0)
        except _Exit as done:
            return done.code
        except stopping.Stopped as stopped:
            print(stopped, flush=True)
            return stopping.EXIT_STOPPED
        except _ERRORS as error:
            print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as error:
            if not files.is_disk_full(error):  # raised outside the package's writers (TF)
                raise
            print(f"error: {files.describe_disk_full(getattr(error, 'filename', None) or '.')}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_ERROR

    return main


def run(main: Callable[[list[str] | None], int]) -> None:
    """Console-script entry: quiet logs, `main(sys.argv)`, exit with its code."""
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    sys.exit(main(sys.argv))


class _Definer:
    """`define.integer(name, default, help, ...)`: absl's DEFINE_* on one command's flags."""

    def __init__(self, flag_values: flags.FlagValues):
        self._flag_values = flag_values

    def __getattr__(self, kind: str):
        define = getattr(flags, f"DEFINE_{kind}")
        return lambda *args, **kwargs: define(*args, flag_values=self._flag_values, **kwargs)


def flag_definitions() -> tuple[flags.FlagValues, _Definer]:
    """A command's own FlagValues (copied and parsed by each `main` call) and its definer."""
    flag_values = flags.FlagValues()
    return flag_values, _Definer(flag_values)


def define_latent_grid_flags(define: _Definer, purpose: str) -> None:
    """--latent_bits, --latent_grid and --coding_prior, the bits-back coder's discretisation
    (tfvae-compress, tfvae-bpp --compress); `purpose` ends the first flag's help."""
    define.integer(
        "latent_bits", 12,  # tfvae.compression.latents.DEFAULT_BITS
        f"B: each latent coded as one of 2^B bins of its prior ({purpose}).",
        lower_bound=4, upper_bound=16,
    )  # fmt: skip
    define.enum(
        "latent_grid", "equal_width", ["equal_mass", "equal_width"],
        "The latents' bins: equal mass under each prior, or equal width over +-16 prior "
        "standard deviations with the posterior coded over a window (docs/compression.md).",
    )  # fmt: skip
    define.enum(
        "coding_prior", "fitted", ["fitted", "model"],  # tfvae.compression.latents.CODINGS
        "What --latent_grid=equal_width codes the bins under: per latent channel a Gaussian "
        "fitted to the images' posteriors (its numbers in the file's header), or the model's "
        "prior.",
    )  # fmt: skip
