"""The plan of the report's experiments: which runs to train, which package commands evaluate
and draw them, and in what order (`Plan`); `reproduce.Runner` runs it.

Each `Step` is an installed command of this package with its outputs and the steps it depends
on; the plan writes each training's full flags to OUT/configs/NAME.flags. This module imports no
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

from tfvae import config as config_lib
from tfvae.runtime.files import write_atomically
from tfvae.samplers import KINDS


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How every model is measured (flags of tools/bpp.py and tools/sample_quality.py)."""

    k: int = 2000  # importance samples of log p(x)
    num_images: int = 1000  # validation images of log p(x)
    batch_size: int = 5
    chunk_size: int = 200
    quality_num_images: int = 1000  # N of the Frechet distances
    temperatures: tuple[float, ...] = (1.0, 0.7)
    classifier_epochs: int = 10
    classifier_train_size: int = 0
    fid: str = "auto"
    inception_weights: str = ""
    sampler: str = ""  # a sampler kind fitted to every run and drawn beside its prior ("" = none)

    def __post_init__(self):  # checked before hours of training, not after
        limits = {  # field: (its flag, least value)
            "k": ("eval_k", 1), "num_images": ("eval_num_images", 0),
            "batch_size": ("eval_batch_size", 1), "chunk_size": ("chunk_size", 1),
            "quality_num_images": ("quality_num_images", 2),
            "classifier_epochs": ("classifier_epochs", 1),
            "classifier_train_size": ("classifier_train_size", 0),
        }  # fmt: skip
        for name, (flag, least) in limits.items():
            if getattr(self, name) < least:
                raise ValueError(
                    f"Flag `--{flag}` is {getattr(self, name)}; it must be >= {least}."
                )
        if self.sampler and self.sampler not in KINDS:
            raise ValueError(
                f"Flag `--sampler` is {self.sampler!r}; accepted: '' (none), {', '.join(KINDS)}."
            )
        if not self.temperatures or min(self.temperatures) <= 0:
            raise ValueError(
                f"Flag `--quality_temperature` is {list(self.temperatures)}; each must be > 0."
            )


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained model: `role` is 'main' (the report's runs) or 'reference'."""

    name: str
    model_dir: str
    flagfile: str
    role: str = "main"
    config: config_lib.Config | None = None  # None for a reference run until it is trained


@dataclasses.dataclass
class Step:
    """One command of the plan. `command(plan)` may depend on earlier results (the best run)."""

    key: str
    command: Callable[[Plan], list[str]]
    outputs: Callable[[Plan], list[str]]
    deps: list[str] = dataclasses.field(default_factory=list)


def run_name(config: config_lib.Config) -> str:
    """'vae_deconv', 'iwae5_nearest', ...: the model kind and its decoder upsampling."""
    return f"{'vae' if config.k == 1 else f'iwae{config.k}'}_{config.upsampling}"


def tool_step(key: str, tool: str, args, outputs, deps) -> Step:
    """A Step running the command tfvae-TOOL; `args` and `outputs` are lists or functions of the
    plan."""
    return Step(
        key,
        lambda p: [f"tfvae-{tool.replace('_', '-')}", *_resolve(args, p)],
        lambda p: _resolve(outputs, p),
        deps,
    )


def _resolve(value, plan):
    return value(plan) if callable(value) else value


class Plan:
    """Trainings, evaluations, figures and the export that reproduce the report.

    Args:
      base: the Config of the upsampling runs (section 2); the VAE and IWAE of section 3.1 are
        it with the deconvolution decoder and k = 1 and k = `iwae_k`.
      output_dir: OUT (see the module docstring).
      evaluation: how each model is measured.
      reference_flagfiles: training flagfiles of extra runs measured the same way (e.g. the
        quick start), shown beside the report's runs; their model_dir becomes OUT/runs/NAME.
    """

    def __init__(self, base, output_dir, evaluation=Evaluation(), iwae_k=5, reference_flagfiles=()):
        if iwae_k < 2:
            raise ValueError(f"Flag `--iwae_k` is {iwae_k}; it must be >= 2 (k=1 is the VAE).")
        self.base, self.output_dir, self.evaluation = base, output_dir, evaluation
        self.figures_dir = os.path.join(output_dir, "figures")
        configs = [dataclasses.replace(base, upsampling=u) for u in config_lib.UPSAMPLINGS]
        configs += [dataclasses.replace(base, upsampling="deconv", k=k) for k in (1, iwae_k)]
        self.runs: dict[str, Run] = {}
        for c in configs:  # runs with the same settings are trained once
            name = run_name(c)
            self.runs.setdefault(
                name,
                Run(name, self._dir("runs", name), self._dir("configs", f"{name}.flags"), config=c),
            )
        self.upsampling_runs = [run_name(c) for c in configs[:3]]
        self.vae, self.iwae = run_name(configs[3]), run_name(configs[4])
        for flagfile in reference_flagfiles:
            if not os.path.isfile(flagfile):
                raise ValueError(f"Flag `--reference_flagfiles` names {flagfile}: no such file.")
            name = "reference_" + os.path.splitext(os.path.basename(flagfile))[0]
            if name in self.runs:
                raise ValueError(f"Flag `--reference_flagfiles` names {flagfile} twice.")
            self.runs[name] = Run(name, self._dir("runs", name), flagfile, role="reference")
        self.steps = self._steps()
        self.best: str | None = None  # set by `choose_best` once every model is evaluated

    def _dir(self, *parts) -> str:
        return os.path.join(self.output_dir, *parts)

    def _train_and_bpp_steps(self, runs) -> list[Step]:
        """Each run's training, then its `tfvae-bpp` (which waits for its training)."""
        steps = [
            Step(f"train {r.name}", lambda p, r=r: p.train_command(r),
                 lambda p, r=r: [os.path.join(r.model_dir, "config.json")])
            for r in runs
        ]  # fmt: skip
        return steps + [tool_step(f"bpp {r.name}", "bpp", self._bpp_args(r),
                                  [os.path.join(r.model_dir, "metrics.json")], [f"train {r.name}"])
                        for r in runs]  # fmt: skip

    def _steps(self) -> list[Step]:
        runs = list(self.runs.values())
        steps = self._train_and_bpp_steps(runs)
        sampler = self.evaluation.sampler
        if sampler:  # fitted to each run's codes, nothing retrained
            steps += [tool_step(f"fit sampler {r.name}", "fit_sampler",
                                 [f"--model_dir={r.model_dir}", f"--sampler={sampler}"],
                                 [os.path.join(r.model_dir, "samplers", sampler, "sampler.json")],
                                 [f"train {r.name}"]) for r in runs]  # fmt: skip
        steps += [tool_step(f"sample quality {r.name}", "sample_quality", self._quality_args(r),
                             [self.figure(r.name, "sample_quality.png")],
                             [f"bpp {r.name}", *self._sampler_deps([r])])
                  for r in runs]  # fmt: skip
        main = [self.runs[n] for n in dict.fromkeys(self.upsampling_runs + [self.iwae])]
        title = f"{self.compared_draws().capitalize()} through each decoder "
        steps.append(self._compare("checkerboard", main, self.figures_dir, "upsampling_samples",
                                   title + "(below: centre crops enlarged)"))  # fmt: skip
        steps += [self._compare(f"checkerboard {r.name}", [r],  # its own latent size
                                os.path.join(r.model_dir, "figures"), "upsampling_samples",
                                "Samples") for r in runs if r.role == "reference"]  # fmt: skip
        steps += [tool_step(f"traverse {r.name}", "traverse",  # a hierarchy: its top group
                             [f"--model_dir={r.model_dir}", "--image_index=0"],
                             [self.figure(r.name, "traversal.png")], [f"train {r.name}"])
                  for r in runs if r.role == "reference"]  # fmt: skip
        pair = [self.runs[self.vae], self.runs[self.iwae]]
        title = f"{self.compared_draws().capitalize()} through the VAE (k=1) and the IWAE "
        steps.append(self._compare("vae vs iwae samples", pair, self.figures_dir, "vae_vs_iwae",
                                   title + f"(k={pair[1].config.k})"))  # fmt: skip
        steps.append(tool_step("loss curves", "loss_curves",
                                ["--model_dirs=" + ",".join(r.model_dir for r in pair),
                                 f"--output_dir={self.figures_dir}"],
                                [os.path.join(self.figures_dir, "loss_curves.png")],
                                [f"train {r.name}" for r in pair]))  # fmt: skip
        return steps + self._best_run_steps()

    def draws(self, whose: str = "") -> str:
        """What the figures decode: 'prior draws' or '{sampler}-sampler draws{whose}'."""
        sampler = self.evaluation.sampler
        return f"{sampler}-sampler draws{whose}" if sampler else "prior draws"

    def compared_draws(self) -> str:
        """What the comparison figures decode through several decoders."""
        if self.evaluation.sampler:  # each run its own sampler's, one seed
            return f"each run's own {self.evaluation.sampler}-sampler draws (one seed)"
        return "the same prior draws"

    def _sampler_deps(self, runs) -> list[str]:
        return [f"fit sampler {r.name}" for r in runs] if self.evaluation.sampler else []

    def _sampler_args(self) -> list[str]:
        return [f"--sampler={self.evaluation.sampler}"] if self.evaluation.sampler else []

    def _best_run_steps(self) -> list[Step]:
        """Figures and the export of the best run, known once every main run is evaluated."""
        deps = [f"bpp {n}" for n, r in self.runs.items() if r.role == "main"]
        deps += self._sampler_deps([r for r in self.runs.values() if r.role == "main"])
        interpolate = ["--spherical", *self._sampler_args()]
        figures = [("traverse", "traversal.png", ["--image_index=0"]),  # as the report: an image
                   ("interpolate", "interpolation.png", interpolate)]  # fmt: skip
        if not self.base.dataset.startswith("folder:"):  # a folder of images has no labels
            figures.append(("latents", "latents.png", ["--num_images=500"]))  # as traverse
        steps = [
            tool_step(f"{tool} best", tool,
                       lambda p, x=extra: [f"--model_dir={p.runs[p.best].model_dir}", *x],
                       lambda p, f=png: [p.figure(p.best, f)], deps)
            for tool, png, extra in figures
        ]  # fmt: skip
        export = self._dir("export")
        return steps + [
            tool_step("export best", "export",
                       lambda p: [f"--model_dir={p.runs[p.best].model_dir}",
                                  f"--export_dir={export}", "--version=1", "--overwrite"],
                       [os.path.join(export, "1", "saved_model.pb")], deps)
        ]  # fmt: skip

    def _bpp_args(self, run: Run) -> list[str]:
        e = self.evaluation
        return [f"--model_dir={run.model_dir}", f"--k={e.k}", f"--num_images={e.num_images}",
                f"--eval_batch_size={e.batch_size}", f"--chunk_size={e.chunk_size}",
                "--seed=0"]  # fmt: skip

    def _quality_args(self, run: Run) -> list[str]:
        e = self.evaluation
        args = [f"--model_dir={run.model_dir}", f"--num_images={e.quality_num_images}",
                "--temperature=" + ",".join(str(t) for t in e.temperatures),
                "--samplers=" + ",".join(["prior", *([e.sampler] if e.sampler else [])]),
                f"--classifier_epochs={e.classifier_epochs}",
                f"--classifier_train_size={e.classifier_train_size}", f"--fid={e.fid}"]  # fmt: skip
        return args + (
            [f"--inception_weights={e.inception_weights}"] if e.inception_weights else []
        )

    def _compare(self, key, runs, output_dir, name, title) -> Step:
        args = ["--model_dirs=" + ",".join(r.model_dir for r in runs),
                f"--output_dir={output_dir}", f"--name={name}", f"--title={title}",
                *self._sampler_args()]  # fmt: skip
        deps = [f"train {r.name}" for r in runs] + self._sampler_deps(runs)
        return tool_step(key, "compare_upsampling", args,
                          [os.path.join(output_dir, f"{name}.json")], deps)  # fmt: skip

    def train_command(self, run: Run) -> list[str]:
        command = ["tfvae-train", f"--flagfile={run.flagfile}"]
        return command + ([f"--model_dir={run.model_dir}"] if run.role == "reference" else [])

    def figure(self, name: str, file: str) -> str:
        return os.path.join(self.runs[name].model_dir, "figures", file)

    def write_flagfiles(self) -> None:
        """OUT/configs/NAME.flags: every Config field of each main run and its model_dir.

        Raises ValueError, before anything is written, when a run already trained in OUT was
        made with other settings (only run-control fields such as epochs may change)."""
        main = [run for run in self.runs.values() if run.role == "main"]
        for run in main:
            saved = os.path.join(run.model_dir, "config.json")
            if os.path.exists(saved):
                differences = config_lib.differences(config_lib.load(saved), run.config)
                if differences:
                    raise ValueError(
                        f"{run.model_dir} was trained with other flags ({'; '.join(differences)})"
                        "; use another --output_dir or delete that run."
                    )
        for run in main:
            text = config_lib.to_flagfile(
                run.config, {"model_dir": run.model_dir}, f"{run.name}: written by tfvae-reproduce"
            )
            _write_if_changed(run.flagfile, text)

    def metrics(self, name: str) -> dict:
        path = os.path.join(self.runs[name].model_dir, "metrics.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def choose_best(self) -> str:
        """The main run with the lowest importance-sampled NLL (nats; same images and K)."""
        scored = [
            (self.metrics(n).get("nll_nats", float("inf")), n)
            for n, r in self.runs.items()
            if r.role == "main"
        ]
        self.best = min(scored)[1]
        return self.best


def _write_if_changed(path: str, text: str) -> None:
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text + "\n":
                return
    write_atomically(path, text + "\n")
