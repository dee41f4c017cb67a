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
TRAINING_ONLY_FLAGS = ("max_steps", "export")  # the training command's flags beyond Config


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


def _training_flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    flags.DEFINE_integer("max_steps", None, "", flag_values=fv)
    flags.DEFINE_bool("export", False, "", flag_values=fv)
    return fv


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
    training_fv = _training_flag_values() if reads_run else None
    own, training_args = [], []
    for arg, from_file in _expanded(args):
        name = _flag_name(arg)
        shared = from_file and training_fv is not None and name not in (None, "model_dir")
        if shared and _is_training(name, training_fv):  # a shared flagfile's training setting
            training_args.append(arg)
            continue
        if name is not None and name in aliases:
            new = aliases[name]
            print(f"warning: --{name} is deprecated; use --{new}.", file=sys.stderr)
            arg = arg.replace(f"-{name}", f"-{new}", 1)
            name = new
        training_setting = (
            training_fv is not None and name is not None and _is_training(name, training_fv)
        )
        if training_setting and name != "model_dir" and (from_file or name not in fv):
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
    return name[2:] if name not in fv and name.startswith("no") else name


def _is_training(name: str, training_fv) -> bool:
    return _base_name(name, training_fv) in training_fv


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


def load_run_config(parsed: Parsed, model_dir: str | None = None):
    """The Config of a run directory (one line when it has none or it is broken)."""
    model_dir = model_dir or parsed.model_dir
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise UsageError(f"--model_dir={model_dir} has no config.json: not a tfvae run.")
    config = config_lib.load(path)
    check_training_settings(parsed, config)
    return config


def int_list(parsed: Parsed, name: str, low: int | None = None, high: int | None = None) -> list:
    """The integers of list flag `--name`, each in [low, high) (one line naming a bad one)."""
    return _numbers(parsed, name, int, "integers", low, high)


def float_list(parsed: Parsed, name: str, low: float | None = None) -> list:
    """The numbers of list flag `--name`, each > low when given."""
    return _numbers(parsed, name, float, "numbers", low, None, strict=True)


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


def capped(count: int, available: int, flag: str, what: str) -> int:
    """`count` images, or all `available` (0 = all) with one line when there are fewer."""
    if count == 0 or count > available:
        if count:
            print(f"note: --{flag}={count}, but {what} has {available}; using {available}.")
        return available
    return count


def split_size(config, split: str) -> int:
    """Images in a split of the run's dataset (its --train_size/--val_size subset)."""
    from tfvae import data

    return int(data.load_config_split(config, split, 0).cardinality())


# ------------------------------------------------------------------------------ commands

_ERRORS = (UsageError, ValueError, FileNotFoundError, NotImplementedError, FloatingPointError)


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
        except (files.DiskFullError, files.LockHeldError) as error:
            print(f"error: {error.args[-1] if error.args else error}", file=sys.stderr)
            return EXIT_ERROR
        except _ERRORS as error:
            print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as error:
            if error.errno == 28:  # ENOSPC raised outside the package's writers (TensorFlow)
                print(f"error: {files.describe_disk_full(error.filename or '.')}", file=sys.stderr)
                return EXIT_ERROR
            raise

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
