"""The search space: `--search` text -> validated entries -> keras-tuner HyperParameters.

Entries are separated by spaces, each NAME=SPEC with NAME a Config field:
  NAME=a,b,c       a choice among values          upsampling=deconv,nearest,bilinear
  NAME=lo:hi       a uniform range (int or float)  width=16:64
  NAME=lo:hi:log   a log-uniform range             learning_rate=1e-4:3e-3:log
"""

from __future__ import annotations

import dataclasses

from tfvae import config as config_lib
from tfvae.evaluation import units

UNSEARCHABLE = {
    **{name: "it defines the validation data every trial is scored on"
       for name in ("dataset", "data_dir", "image_size", "crop", "val_size")},
    **{name: "it does not change what a run computes"
       for name in config_lib.RUN_CONTROL_FIELDS if name != "epochs"},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Entry:
    """One searched hyper-parameter: a choice among `values`, or a range [low, high]."""

    name: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    sampling: str = "linear"

    def __str__(self) -> str:
        if self.values:
            return f"{self.name}={','.join(str(v) for v in self.values)}"
        return f"{self.name}={self.low!r}:{self.high!r}:{self.sampling}"


def _field_type(name: str) -> type:
    field = {f.name: f for f in dataclasses.fields(config_lib.Config)}[name]
    return {"int": int, "float": float, "bool": bool, "str": str}.get(field.type, field.type)


def _parse_value(name: str, text: str):
    kind = _field_type(name)
    try:
        if kind is bool:
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        return kind(text)
    except (ValueError, KeyError):
        raise ValueError(
            f"--search: {name}={text!r} is not a valid {kind.__name__} for `--{name}`."
        ) from None


def parse_search(text: str, base, tuner: str = "random") -> list[Entry]:
    """Parses and validates a search space against `base` (a Config); ValueError, one line.

    Every value (each choice, both ends of a range) must give a valid Config on its own.
    """
    known = {f.name for f in dataclasses.fields(config_lib.Config)}
    entries, names = [], set()
    for item in text.split():
        name, _, spec = item.partition("=")
        if name not in known:
            raise ValueError(
                f"--search: {name!r} is not a Config field; accepted: {', '.join(sorted(known))}."
            )
        if name in UNSEARCHABLE or (name == "epochs" and tuner == "hyperband"):
            why = UNSEARCHABLE.get(name, "hyperband sets each trial's epochs (tuner/epochs)")
            raise ValueError(f"--search: {name} cannot be searched: {why}; set it with --{name}.")
        if name in names or not spec:
            raise ValueError(f"--search: {item!r} is repeated or has no values (NAME=a,b, lo:hi).")
        names.add(name)
        entries.append(_parse_entry(name, spec))
    if not entries:
        raise ValueError("--search is empty; give at least one NAME=a,b,c or NAME=lo:hi[:log].")
    for entry in entries:
        for value in entry.values or (entry.low, entry.high):
            try:
                base.replace(**{entry.name: value})
            except ValueError as error:
                raise ValueError(f"--search: {entry}: {error}") from None
    likelihoods = next((e.values for e in entries if e.name == "likelihood"), (base.likelihood,))
    without = [v for v in likelihoods if units.convention_or_none(v) is None]
    if without:
        raise ValueError(
            f"--search: likelihood {without[0]} gives no bits/dim to compare (a cross-entropy on "
            "8-bit pixels, not a likelihood); accepted: "
            f"{', '.join(v for v in config_lib.LIKELIHOODS if units.convention_or_none(v))}."
        )
    return entries


def _parse_entry(name: str, spec: str) -> Entry:
    if ":" not in spec:
        values = tuple(_parse_value(name, v) for v in spec.split(","))
        if len(set(values)) != len(values):
            raise ValueError(f"--search: {name}={spec} repeats a value.")
        return Entry(name, values)
    parts = spec.split(":")
    kind = _field_type(name)
    if kind not in (int, float) or len(parts) not in (2, 3):
        raise ValueError(
            f"--search: {name}={spec}: ranges are lo:hi or lo:hi:log, for int and float fields; "
            f"give a choice as {name}=a,b,c."
        )
    sampling = parts[2] if len(parts) == 3 else "linear"
    low, high = (_parse_value(name, p) for p in parts[:2])
    if sampling not in ("linear", "log") or not low < high or (sampling == "log" and low <= 0):
        raise ValueError(
            f"--search: {name}={spec}: need lo < hi (lo > 0 for log) and a sampling of "
            "linear or log."
        )
    return Entry(name, low=low, high=high, sampling=sampling)


def hyperparameters(entries: list[Entry]):
    """The keras_tuner.HyperParameters declaring the whole space (before the first trial)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for e in entries:
        if e.values:
            hp.Choice(e.name, list(e.values))
        elif _field_type(e.name) is int:
            hp.Int(e.name, e.low, e.high, sampling=e.sampling)
        else:
            hp.Float(e.name, e.low, e.high, sampling=e.sampling)
    return hp


def searched_values(values: dict) -> dict:
    """A trial's searched values with their Config types (keras-tuner gives bools as 1/0),
    without keras-tuner's own tuner/* entries."""
    return {k: _field_type(k)(v) for k, v in values.items() if not k.startswith("tuner/")}


def trial_config(base, values: dict):
    """The Config of a trial: `base` with its searched values (and hyperband's tuner/epochs)."""
    changes = searched_values(values)
    if "tuner/epochs" in values:
        changes["epochs"] = int(values["tuner/epochs"])
    return base.replace(**changes)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a search depends on; saved as TUNE_DIR/search.json and checked on resume."""

    base: dict
    space: list
    tuner: str = "random"
    score_k: int = 5
    hyperband_factor: int = 3

    def differences(self, saved: dict) -> list[str]:
        """Lines naming every entry that differs from a saved search.json."""
        lines = []
        for key in ("tuner", "score_k", "hyperband_factor"):
            if saved.get(key) != getattr(self, key):
                lines.append(f"{key}: {saved.get(key)!r} (saved) vs {getattr(self, key)!r}")
        saved_space = dict(s.split("=", 1) for s in saved.get("space", []))
        space = dict(s.split("=", 1) for s in self.space)
        for name in sorted(set(saved_space) | set(space)):
            if saved_space.get(name) != space.get(name):
                lines.append(
                    f"search {name}: {saved_space.get(name, 'absent')} (saved) vs "
                    f"{space.get(name, 'absent')} (requested)"
                )
        ignore = [name for name in config_lib.RUN_CONTROL_FIELDS if name != "epochs"]
        saved_base = config_lib.Config(**saved.get("base", {}))
        lines += config_lib.differences(saved_base, config_lib.Config(**self.base), ignore)
        return lines
