"""A study of training variants x seeds (the disentanglement objectives, say), run by the
report's `reproduce.Runner` (state.json, resume, progress): each variant is the base Config with
a few flags changed, trained once per seed, measured by `tfvae-bpp` (log p(x), bits/dim) and
`tfvae-latents --scores=all` (disentanglement_lib's scores), and its first seed traversed
(`tfvae-traverse`). `write_page` writes OUT/REPORT.md: every measure's mean and spread over the
seeds of each variant, and a traversal per variant. This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import re
from importlib import metadata

import numpy as np

from tfvae import config as config_lib
from tfvae.experiments.plan import Evaluation, Plan, Run, Step, tool_step
from tfvae.experiments.sentences import minutes
from tfvae.runtime.files import read_json, write_atomically


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How every run is scored (flags of tools/latents.py)."""

    num_images: int = 1000  # validation images whose posterior means are scored
    points: int = 200  # beta_vae, factor_vae: batches of 64 painted faces to fit on

    def __post_init__(self):
        for name, flag in (("num_images", "score_num_images"), ("points", "score_points")):
            if getattr(self, name) < 1:
                raise ValueError(f"Flag `--{flag}` is {getattr(self, name)}; it must be >= 1.")


def parse_variant(text: str, base: config_lib.Config) -> tuple[str, list[str], config_lib.Config]:
    """'NAME' or 'NAME:FIELD=VALUE,FIELD=VALUE' -> (NAME, ['--FIELD=VALUE', ...], the base Config
    with those training flags), each value parsed and checked as its flag is."""
    from absl import flags

    name, _, changes = text.partition(":")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"Flag `--variant` is {text!r}; accepted: NAME[:FLAG=VALUE,...], NAME "
                         "of lowercase letters, digits and _.")  # fmt: skip
    args = [f"--{change.strip()}" for change in changes.split(",") if change.strip()]
    values = flags.FlagValues()
    config_lib.define_flags(values)
    try:
        values(["variant", *config_lib.to_flags(base), *args])
        return name, args, config_lib.from_flags(values)
    except (flags.Error, ValueError) as error:
        raise ValueError(f"Flag `--variant` {text!r}: {str(error).splitlines()[0]}") from None


class StudyPlan(Plan):
    """Every variant trained with every seed, measured, and its first seed traversed.

    Args:
      base: the Config every variant starts from.
      output_dir: OUT (runs in OUT/runs/VARIANT_seedS, flags in OUT/configs/).
      variants: texts of `parse_variant`, one per variant.
      seeds: the training seeds of every variant.
      evaluation, scoring: how every run is measured (defaults: `Evaluation()`, `Scoring()`).
    """

    def __init__(self, base, output_dir, variants, seeds, evaluation=None, scoring=Scoring()):
        if not variants or not seeds or len(set(seeds)) < len(seeds):
            raise ValueError(f"Flags `--variant` {list(variants)} and `--seeds` {list(seeds)} "
                             "must name at least one variant and distinct seeds.")  # fmt: skip
        self.base, self.output_dir = base, output_dir
        self.evaluation, self.scoring = evaluation or Evaluation(), scoring
        self.seeds = list(seeds)
        self.variants: dict[str, list[str]] = {}  # name -> its flags
        self.runs: dict[str, Run] = {}
        for text in variants:
            name, args, config = parse_variant(text, base)
            if name in self.variants:
                raise ValueError(f"Flag `--variant` names {name} twice.")
            self.variants[name] = args
            for seed in self.seeds:
                run = f"{name}_seed{seed}"
                self.runs[run] = Run(run, self._dir("runs", run),
                                     self._dir("configs", f"{run}.flags"),
                                     config=dataclasses.replace(config, seed=seed))  # fmt: skip
        self.steps, self.best = self._steps(), None

    def runs_of(self, variant: str) -> list[str]:
        return [f"{variant}_seed{seed}" for seed in self.seeds]

    def _steps(self) -> list[Step]:
        runs, s = list(self.runs.values()), self.scoring
        steps = self._train_and_bpp_steps(runs)
        steps += [tool_step(f"scores {r.name}", "latents",
                             [f"--model_dir={r.model_dir}", "--scores=all", "--seed=0",
                              f"--num_images={s.num_images}", f"--score_points={s.points}"],
                             [self.figure(r.name, "latents.json")], [f"bpp {r.name}"])
                  for r in runs]  # fmt: skip
        first = [self.runs[self.runs_of(v)[0]] for v in self.variants]
        return steps + [tool_step(f"traverse {r.name}", "traverse",
                                   [f"--model_dir={r.model_dir}", "--image_index=0",
                                    f"--num_dims={r.config.latent_dim}"],
                                   [self.figure(r.name, "traversal.png")], [f"train {r.name}"])
                        for r in first]  # fmt: skip


def spread(values) -> tuple[float, float]:
    """(mean, standard deviation over seeds with n - 1; 0 for one seed) of float [S]."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def measures(plan: StudyPlan) -> dict[str, dict[str, list[float]]]:
    """measure -> variant -> its value in each seed's run (a run without it, or where it is not
    finite, left out): bits/dim and active units of `tfvae-bpp`, then every score of
    `tfvae-latents`."""
    table: dict[str, dict[str, list[float]]] = {}
    for variant in plan.variants:
        for run in plan.runs_of(variant):
            m = plan.metrics(run)
            found = {k: m.get(k) for k in ("bits_per_dim", "active_units")}
            found.update(m.get("disentanglement", {}))
            for key, value in found.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values = table.setdefault(key, {}).setdefault(variant, [])
                    values += [float(value)] if np.isfinite(value) else []
    return table


def _table(plan: StudyPlan) -> str:
    names = list(plan.variants)
    rows = [f"| measure | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for key, by_variant in measures(plan).items():
        cells = []
        for name in names:
            values = by_variant.get(name, [])
            mean, sd = spread(values) if values else (None, None)
            cells.append("n/a" if mean is None else f"{mean:.3f} ± {sd:.3f} (n={len(values)})")
        rows.append(f"| {key} | {' | '.join(cells)} |")
    return "\n".join(rows)


def _versions() -> str:
    found = []
    for package in ("tensorflow", "keras", "tensorflow-probability", "numpy", "scikit-learn"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _traversals(plan: StudyPlan, state: dict) -> list[str]:
    sections = ["## Traversals"]
    for variant in plan.variants:
        run = plan.runs_of(variant)[0]
        numbers = read_json(plan.figure(run, "traversal.json"), default={})
        rows = ", ".join(f"z[{d}] {f}" for d, f in numbers.get("best_factor", {}).items())
        path = os.path.relpath(plan.figure(run, "traversal.png"), plan.output_dir)
        command = state["steps"].get(f"traverse {run}", {}).get("command")
        caption = f"{variant} ({run}) around validation image 0; rows: {rows or 'no labels'}"
        sections.append(f"![{variant}]({path})\n\n*{caption}.*"
                        + (f" Made by `{command}`." if command else ""))  # fmt: skip
    return sections


def write_page(plan: StudyPlan, state: dict, command: str, path: str) -> str:
    """Writes the study's page (OUT/REPORT.md) atomically, unchanged text left as it is."""
    c, e, s = plan.base, plan.evaluation, plan.scoring
    seconds = sum(state["steps"].get(step.key, {}).get("seconds", 0.0) for step in plan.steps)
    variants = "\n".join(f"- **{name}**: {' '.join(f'`{a}`' for a in args) or 'the base flags'}"
                         for name, args in plan.variants.items())  # fmt: skip
    sections = [
        "# Training objectives compared: disentanglement and log p(x)",
        f"Made by `{command}`: {len(plan.steps)} steps, {minutes(seconds)} of commands on "
        f"{os.cpu_count()} CPU cores, {_versions()}. Every number below comes from this run.",
        f"**Setup.** {c.dataset} at {c.image_size}x{c.image_size}, width {c.width}, latent "
        f"{c.latent_dim}, {c.likelihood} likelihood, k={c.k}, batch {c.batch_size}, epochs "
        f"{c.epochs}, Adam lr {c.learning_rate}; each variant trained with seeds "
        f"{', '.join(map(str, plan.seeds))}. **Variants** (flags changed from these):",
        variants,
        f"**Measures.** `bits_per_dim`: log p(x) by importance sampling with K={e.k} on the "
        f"first {e.num_images or 'all'} validation images (`tfvae-bpp`). The scores "
        "(`tfvae-latents --scores=all`, defined in the package's docs/looking_inside.md): the "
        f"posterior means of the first {s.num_images} validation images, 20 bins, seed 0; "
        f"beta_vae and factor_vae on {s.points} batches of 64 painted faces to fit on and "
        f"{max(1, s.points // 2)} to test. Each cell: the mean over a variant's seeds ± their "
        "standard deviation (n - 1), n runs; each run's own numbers are in "
        "`runs/NAME/metrics.json`.",
        _table(plan),
        *_traversals(plan, state),
    ]
    text = "\n\n".join(sections) + "\n"
    if os.path.exists(path):
        with open(path) as file:
            if file.read() == text:
                return text
    write_atomically(path, text)
    return text
