"""REPORT.md of a reproduction (experiments.reproduce): one table of all models, every figure, and
sentences generated from the numbers of this run only (with their standard errors; the tables
and sentences are experiments.sentences').

Reads what the plan's commands wrote: each run's config.json, metrics.json and
log_likelihood_per_example.npz, the figures' JSON, state.json (commands, wall seconds) and the
export's metadata. Nothing here runs a model.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np

from tfvae.experiments.sentences import (
    Findings,
    codec_sentence,
    is_density,
    iwae_sentences,
    minutes,
    models_table,
    pm,
    quality_sentences,
    reference_names,
    reference_sentences,
    report_bits_per_pixel,
    upsampling_sentences,
)
from tfvae.runtime.files import read_json, write_atomically


def _figure(f: Findings, file: str, caption: str, step: str, run: str | None = None) -> str:
    """A figure of a run (or of OUT/figures) embedded with its caption and its command."""
    plan = f.plan
    path = plan.figure(run, file) if run else os.path.join(plan.figures_dir, file)
    command = f.state["steps"].get(step, {}).get("command")
    text = f"![{caption}]({os.path.relpath(path, plan.output_dir)})\n\n*{caption}.*"
    return text + (f" Made by `{command}`." if command else "")


def _log_likelihood_table(f: Findings) -> str:
    rows = [
        "| run | log p(x) nats (± s.e.) | ELBO nats | IWAE-k bound nats (k of training) | "
        "report's bits per pixel |",
        "|---|---|---|---|---|",
    ]
    for name, m in f.metrics.items():
        bound = m[f"iwae_{min(f.configs[name].k, m['k'])}_bound_nats"]
        rows.append(
            f"| {name} | {pm(-m['nll_nats'], m['nll_nats_standard_error'] or 0.0)} | "
            f"{m['elbo_nats']:.1f} | {bound:.1f} (k={f.configs[name].k}) | "
            f"{report_bits_per_pixel(m)} |"
        )
    return "\n".join(rows)


def _header(f: Findings, command: str, versions: dict) -> list[str]:
    c, e, m = f.plan.base, f.plan.evaluation, f.metrics[f.plan.best]
    seconds = sum(f.state["steps"].get(s.key, {}).get("seconds", 0.0) for s in f.plan.steps)
    software = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        "# Experimenting with VAEs, reproduced",
        f"Made by `{command}`: {len(f.plan.steps)} steps, {minutes(seconds)} of commands in all "
        f"on {os.cpu_count()} CPU cores{', ' + software if software else ''}. Every number and "
        "figure below comes from this run; rerunning the command redoes nothing that is finished.",
        f"**Setup.** {c.dataset} at {c.image_size}x{c.image_size} ({c.train_size or 'all'} "
        f"training, {c.val_size or 'all'} validation images), width {c.width}, latent "
        f"{c.latent_dim}, kernel {c.kernel_size}, {c.likelihood} likelihood, batch "
        f"{c.batch_size}, {c.epochs} epochs, Adam lr {c.learning_rate} beta_1 {c.beta_1}, seed "
        f"{c.seed}. **Evaluation.** log p(x) by importance sampling with K={e.k}"
        f"{'' if e.k == 2000 else ' (the report used K=2000)'} on the first "
        f"{m.get('num_images')} validation images (seed 0); bits/dim: "
        f"{m.get('bits_per_dim_convention', 'n/a')}. Sample quality from N={e.quality_num_images} "
        "images at each temperature T (z ~ N(0, T^2 I)).",
        "## All models",
        models_table(f),
        codec_sentence(f),
        "NLL: minus log p(x), nats per image, mean over images with its standard error. "
        "Checkerboard: share of spectral energy at the Nyquist frequencies of 256 samples, "
        f"{f.plan.compared_draws()}. "
        + (
            "For a density likelihood (gaussian) NLL is that of the dequantized pixels in "
            "[0, 1]^D and can be negative; its bits/dim adds D ln 256 nats, so bits/dim compares "
            "across likelihoods. "
            if any(map(is_density, f.metrics.values()))
            else ""
        )
        + "Training time: wall time of the training command. The best of the report's runs by "
        f"NLL is **{f.plan.best}**; the traversal, interpolation and sample figures and the "
        "export are of it"
        + (
            "; each reference run's own samples and traversal are under Reference runs."
            if reference_names(f)
            else "."
        ),
    ]


def _comparisons(f: Findings) -> list[str]:
    """The report's sections 2 and 3.1: decoders, then VAE against IWAE."""
    return [
        "## Decoder upsampling (the report's section 2)",
        upsampling_sentences(f),
        _figure(f, "upsampling_samples.png", f"{f.plan.compared_draws().capitalize()} "
                "through each decoder, with enlarged centre crops", "checkerboard"),
        _figure(f, "transposed_conv_overlap.png", "Kernel taps per output pixel of a stride-2 "
                "transposed convolution", "checkerboard"),
        "## VAE versus IWAE (the report's section 3.1)",
        iwae_sentences(f),
        _figure(f, "vae_vs_iwae.png", f"{f.plan.compared_draws().capitalize()} through the "
                "VAE and the IWAE", "vae vs iwae samples"),
        _figure(f, "loss_curves.png", "Training loss, validation loss and validation loss "
                "averaged over epochs (nats per image)", "loss curves"),
    ]  # fmt: skip


def _best_run(f: Findings) -> list[str]:
    """The report's sections 3.2 and 3.3 and the prior samples, all of the best run."""
    best, plan = f.plan.best, f.plan
    factors = read_json(plan.figure(best, "traversal.json"), default={}).get("best_factor", {})
    changes = read_json(plan.figure(best, "interpolation.json"), default={})
    changes = changes.get("mean_abs_change_between_frames", {})
    sections = [
        "## Latent traversals (the report's section 3.2)",
        f"Rows are {best}'s most active latent dimensions, grouped by the labelled factor each "
        "carries the most information on (over the factor's entropy), inactive ones last: "
        + (", ".join(f"z[{d}] {name}" for d, name in factors.items()) or "no labels") + ".",
        _figure(f, "traversal.png", f"Traversals of {best} around the encoding of validation "
                "image 0", "traverse best", best),
    ]  # fmt: skip
    if os.path.exists(plan.figure(best, "latents.png")):
        sections.append(_figure(f, "latents.png", "Mutual information (nats) between latents "
                                "and factors", "latents best", best))  # fmt: skip
    return sections + [
        "## Interpolation (the report's section 3.3)",
        "Mean absolute change between consecutive frames (pixels in [0, 1]): "
        + ", ".join(f"{row} {np.mean(v):.4f} (largest {np.max(v):.4f})"
                    for row, v in changes.items()) + ".",
        _figure(f, "interpolation.png", "Latent (linear and spherical) versus pixel "
                f"interpolation between two {plan.draws()}", "interpolate best", best),
        "## Prior samples and their quality",
        quality_sentences(f),
        *[_figure(f, f"samples_t{t}.png", f"Prior samples of {best} at T={t}",
                  f"sample quality {best}", best) for t in plan.evaluation.temperatures],
        *[_figure(f, f"samples_{sampler}_t{t}.png", f"Samples of {best} decoded from its "
                  f"{sampler} sampler (fitted to its latent codes after training) at T={t}",
                  f"sample quality {best}", best)
          for t in plan.evaluation.temperatures if (sampler := plan.evaluation.sampler)],
        _figure(f, "sample_quality.png", "Validation images, reconstructions, samples and the "
                "diagnostic decodings, one row each", f"sample quality {best}", best),
    ]  # fmt: skip


def _reference_runs(f: Findings) -> list[str]:
    """Each reference run's numbers, samples at each temperature and traversal."""
    names = reference_names(f)
    sections = ["## Reference runs"] if names else []
    sampler = f.plan.evaluation.sampler
    for name in names:
        step = f"sample quality {name}"
        sections += [
            f"### {name}",
            reference_sentences(f, name),
            *[_figure(f, f"samples_t{t}.png", f"Prior samples of {name} at T={t}", step, name)
              for t in f.plan.evaluation.temperatures],
            *[_figure(f, f"samples_{sampler}_t{t}.png", f"Samples of {name} decoded from its "
                      f"{sampler} sampler at T={t}", step, name)
              for t in f.plan.evaluation.temperatures if sampler],
        ]  # fmt: skip
        if os.path.exists(f.plan.figure(name, "traversal.png")):
            caption = f"Traversals of {name} around the encoding of validation image 0"
            sections.append(_figure(f, "traversal.png", caption, f"traverse {name}", name))
    return sections


def _closing(f: Findings, metadata: dict) -> list[str]:
    """Section 4's table, the export and every command."""
    plan, steps = f.plan, f.state["steps"]
    configs = ", ".join(f"[{os.path.basename(r.flagfile)}]"
                        f"({os.path.relpath(r.flagfile, plan.output_dir)})"
                        for r in plan.runs.values() if r.role == "main")  # fmt: skip
    return [
        "## Log-likelihood (the report's section 4)",
        _log_likelihood_table(f),
        "## The exported model",
        f"`export/1/`: a SavedModel of {plan.best} (step {metadata.get('step')}) with the "
        "signatures " + ", ".join(f"`{s}`" for s in metadata.get("signatures", {}))
        + "; its contract is in `assets.extra/tfvae_export.json`. Made by "
        f"`{steps.get('export best', {}).get('command')}`.",
        "## Commands",
        f"Each step, in order, with its wall time (configs: {configs}):",
        "\n".join(f"- {s.key}, {minutes(steps[s.key].get('seconds'))}: "
                  f"`{steps[s.key].get('command')}`" for s in plan.steps if s.key in steps),
    ]  # fmt: skip


def write_report(plan, state: dict, command: str, path: str) -> str:
    """Writes REPORT.md for a finished plan (every step done) atomically; returns its text."""
    f = Findings(plan, state)
    metadata = read_json(
        os.path.join(plan.output_dir, "export", "1", "assets.extra", "tfvae_export.json"),
        default={},
    )
    sections = _header(f, command, metadata.get("versions", {}))
    sections += _comparisons(f) + _best_run(f) + _reference_runs(f) + _closing(f, metadata)
    text = "\n\n".join(s for s in sections if s) + "\n"
    if os.path.exists(path):
        with open(path) as file:
            if file.read() == text:
                return text  # unchanged: left as it is (its time stamp too)
    write_atomically(path, text)
    return text


BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"


def update_readme(readme: str, report_path: str, figures_dir: str, heading_levels: int = 3) -> None:
    """Replaces the README's text between BEGIN and END with REPORT.md: figures copied into
    `figures_dir` (a run's as NAME_FILE, so that two runs' samples_t1.0.png stay apart; links
    rewritten relative to the README), headings demoted. A missing README is created holding
    only that section."""
    text = f"{BEGIN}\n{END}\n"
    if os.path.exists(readme):
        with open(readme) as f:
            text = f.read()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no '{BEGIN}' ... '{END}' section to replace.")
    with open(report_path) as f:
        report = f.read()
    base = os.path.dirname(os.path.abspath(report_path))
    os.makedirs(figures_dir, exist_ok=True)

    def move(match):
        source = os.path.join(base, match.group(2))
        parts = os.path.normpath(match.group(2)).split(os.sep)
        run = f"{parts[1]}_" if parts[0] == "runs" and len(parts) > 2 else ""  # runs/NAME/...
        target = os.path.join(figures_dir, run + os.path.basename(source))
        shutil.copyfile(source, target)
        link = os.path.relpath(target, os.path.dirname(os.path.abspath(readme)))
        return f"![{match.group(1)}]({link})"

    report = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", move, report)
    report = re.sub(
        r"^(#+) ",
        lambda m: "#" * (len(m.group(1)) + heading_levels) + " ",
        report,
        flags=re.MULTILINE,
    )
    report = re.sub(r"\[([^\]]+)\]\([^)]+\.flags\)", r"`\1`", report)  # not in the repository
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    write_atomically(readme, f"{head}{BEGIN}\n{report}{END}{tail}")
