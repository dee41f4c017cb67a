"""REPORT.md of a reproduction (experiments.reproduce): one table of all models, every figure, and
sentences generated from the numbers of this run only (with their standard errors).

Reads what the plan's commands wrote: each run's config.json, metrics.json and
log_likelihood_per_example.npz, the figures' JSON, state.json (commands, wall seconds) and the
export's metadata. Nothing here runs a model.
"""

from __future__ import annotations

import math
import os
import re
import shutil

import numpy as np

from tfvae import config as config_lib
from tfvae.evaluation.codecs import NAMES, verdict
from tfvae.runtime.files import PER_EXAMPLE_FILE, read_json, write_atomically

CLEAR = 2.0  # a difference is called one only beyond this many standard errors
FLAT_SHARE = 0.05  # flattened: the last quarter of epochs gained under this share of the fall


def _minutes(seconds) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(value: float) -> str:
    """A distance with three significant digits, without a decimal point from 100 up."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _pm(mean, sem, digits=1) -> str:
    return f"{mean:.{digits}f} ± {sem:.{digits}f}"


class Findings:
    """The numbers of every run of a plan, gathered from its output directory."""

    def __init__(self, plan, state: dict):
        self.plan, self.state = plan, state
        self.configs = {
            n: config_lib.load(os.path.join(r.model_dir, "config.json"))
            for n, r in plan.runs.items()
        }
        self.metrics = {n: plan.metrics(n) for n in plan.runs}
        self.checkerboard, self.data_checkerboard = {}, None
        for path in [os.path.join(plan.figures_dir, "upsampling_samples.json")] + [
            os.path.join(r.model_dir, "figures", "upsampling_samples.json")
            for r in plan.runs.values()
            if r.role == "reference"
        ]:
            numbers = read_json(path, default={})
            for label, value in numbers.get("checkerboard_mean_and_standard_error", {}).items():
                self.checkerboard[label.rsplit("(", 1)[-1].rstrip(")")] = value
            self.data_checkerboard = self.data_checkerboard or numbers.get(
                "data_checkerboard_mean_and_standard_error"
            )
        self.curves = read_json(os.path.join(plan.figures_dir, "loss_curves.json"), default={})

    def train_seconds(self, name: str):
        return self.state["steps"].get(f"train {name}", {}).get("seconds")

    def quality(self, name: str, temperature: float, sampler: str = ""):
        """('FID' or 'factor FD', value) of the prior samples at T (or of a fitted sampler's
        samples), or (why not, None)."""
        m = self.metrics[name]
        key = f"samples_{sampler}_t{temperature}" if sampler else f"samples_t{temperature}"
        for prefix, label in self.quality_kinds(name):
            value = m.get(f"{prefix}_{key}")
            if value is not None:
                return label, value
        return m.get("fid_skipped") or "not measured", None

    def quality_kinds(self, name: str):
        """FID (unless this run's latest sample-quality call skipped it) then factor FD."""
        fid = [] if self.metrics[name].get("fid_skipped") else [("fid", "FID")]
        return fid + [("factor_fd", "factor FD")]

    def per_example(self, name: str):
        path = os.path.join(self.plan.runs[name].model_dir, PER_EXAMPLE_FILE)
        return np.load(path)["log_likelihood"] if os.path.exists(path) else None


def models_table(f: Findings) -> str:
    """Markdown: one row per model, every number of section 4 and the sample quality."""
    temperatures, sampler = f.plan.evaluation.temperatures, f.plan.evaluation.sampler
    kind = next(
        (
            f.quality(n, temperatures[0])[0]
            for n in f.plan.runs
            if f.quality(n, temperatures[0])[1] is not None
        ),
        "sample quality",
    )
    header = (
        [
            "run",
            "upsampling",
            "k",
            "likelihood",
            "NLL nats (± s.e.)",
            "bits/dim",
            "active units",
            "checkerboard (± s.e.)",
        ]
        + [f"{kind}, T={t}" for t in temperatures]
        + [f"{kind}, {sampler} sampler, T={t}" for t in temperatures if sampler]
        + ([f"{kind}, reconstructions"] if sampler else [])
        + ["training time"]
    )
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, c in f.configs.items():
        m = f.metrics[name]
        bits = m.get("bits_per_dim")
        board = f.checkerboard.get(name)
        quality = []
        for t, source in [(t, "") for t in temperatures] + [
            (t, sampler) for t in temperatures if sampler
        ]:
            label, value = f.quality(name, t, source)
            quality.append(_num(value) if value is not None else label)
        if sampler:
            prefix = dict((lab, pre) for pre, lab in f.quality_kinds(name)).get(kind, "factor_fd")
            value = m.get(f"{prefix}_reconstructions")
            quality.append(_num(value) if value is not None else "not measured")
        label = name + (" (reference)" if f.plan.runs[name].role == "reference" else "")
        rows.append(
            "| "
            + " | ".join(
                [
                    label,
                    c.upsampling if c.architecture == "dcgan" else f"{c.architecture} (top-down)",
                    str(c.k),
                    c.likelihood,
                    _pm(m["nll_nats"], m["nll_nats_standard_error"] or 0.0),
                    f"{bits:.3f}" if bits is not None else "n/a (no likelihood)",
                    f"{m['active_units']} of {m.get('latent_dim', c.latent_dim)}",
                    _pm(*board, digits=4) if board else "n/a",
                    *quality,
                    _minutes(f.train_seconds(name)),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def upsampling_sentences(f: Findings) -> str:
    """Which decoder leaves the most checkerboard energy, called only beyond 2 s.e."""
    runs = [n for n in f.plan.upsampling_runs if n in f.checkerboard]
    if not runs:
        return "No checkerboard measure was made."
    ranked = sorted(runs, key=lambda n: -f.checkerboard[n][0])
    most, least = ranked[0], ranked[-1]
    (a, sa), (b, sb) = f.checkerboard[most], f.checkerboard[least]
    real = f.data_checkerboard
    text = ", ".join(
        f"{f.configs[n].upsampling} {_pm(*f.checkerboard[n], digits=4)}" for n in ranked
    )
    text = f"Checkerboard energy, most first: {text}"
    text += f"; real validation images {_pm(*real, digits=4)}." if real else "."
    names = [f.configs[n].upsampling for n in ranked]
    gaps = []
    for i in range(len(ranked) - 1):  # each neighbouring pair, called only beyond 2 s.e.
        (a, sa), (b, sb) = f.checkerboard[ranked[i]], f.checkerboard[ranked[i + 1]]
        z = (a - b) / math.hypot(sa, sb) if sa or sb else float("inf")
        relation = "above" if z > CLEAR else "not distinguishable from"
        gaps.append(f"{names[i]} {relation} {names[i + 1]} ({z:.1f} s.e.)")
    (a, sa), (b, sb) = f.checkerboard[most], f.checkerboard[least]
    z = (a - b) / math.hypot(sa, sb) if sa or sb else float("inf")
    text += f" In this order: {'; '.join(gaps)}; {names[0]} above {names[-1]} by {z:.1f} s.e."
    return text


def iwae_sentences(f: Findings) -> str:
    """IWAE against VAE on the same images' log p(x) (paired), then each run's own bound."""
    vae, iwae = f.plan.vae, f.plan.iwae
    k = f.configs[iwae].k
    lines = []
    a, b = f.per_example(vae), f.per_example(iwae)
    if a is not None and b is not None and len(a) == len(b) and len(a) > 1:
        d = b - a
        mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
        evaluation = f.metrics[iwae].get("k")
        verdict = (
            f"the IWAE is the better model on this run ({mean / sem:.1f} standard errors)"
            if mean > CLEAR * sem
            else f"the VAE is the better model on this run ({-mean / sem:.1f} standard errors), "
            "contrary to what the report found"
            if mean < -CLEAR * sem
            else "the two are not distinguishable on this run (within two standard errors)"
        )
        lines.append(
            f"On the same {len(d)} validation images, log p(x) (K={evaluation}) of the IWAE "
            f"(k={k}) minus that of the VAE is {_pm(mean, sem)} nats per image (paired standard "
            f"error): {verdict}."
        )
    curves = {key.split(" (k=")[0]: value for key, value in f.curves.items()}
    names = [n for n in (vae, iwae) if n in curves]
    if names:
        average = "mean_validation_loss"
        parts = [
            f"{n} {_pm(curves[n][average], curves[n][average + '_standard_error'])}" for n in names
        ]
        lines.append(
            "Validation loss averaged over all epochs (the report's Figure 4(c); each run's own "
            f"bound, the ELBO for k=1 and the IWAE-{k} bound for k={k}, so log p(x) above is the "
            f"fair comparison): {', '.join(parts)} nats per image."
        )
        if len(names) == 2:
            (a, sa), (b, sb) = [(curves[n][average], curves[n][average + "_standard_error"])
                                for n in names]  # fmt: skip
            z = (a - b) / math.hypot(sa, sb) if sa or sb else float("inf")
            lines.append(
                f"The IWAE's average is lower by {z:.1f} standard errors: the report's finding "
                "is reproduced." if z > CLEAR else
                f"The report found the IWAE's average lower; here the difference is {z:.1f} "
                "standard errors (IWAE lower when positive): not reproduced on this run."
            )  # fmt: skip
    boards = [f.checkerboard.get(n) for n in (vae, iwae)]
    if all(boards):
        (a, sa), (b, sb) = boards
        lines.append(
            f"Checkerboard energy of their samples: VAE {_pm(a, sa, 4)}, IWAE {_pm(b, sb, 4)} "
            f"({(b - a) / math.hypot(sa, sb):.1f} s.e., IWAE minus VAE; the report found the "
            "IWAE's samples smoother)."
        )
    if names:
        lines += [flattening_sentence(n, curves[n]["validation_loss"]) for n in names]
    return " ".join(lines)


def flattening_sentence(name: str, losses) -> str:
    """Whether the validation loss (nats, one per epoch) has flattened: the gain of the last
    quarter of the epochs over the quarter before, as a share of the whole fall."""
    losses = np.asarray(losses, np.float64)
    q = len(losses) // 4
    if q < 1:
        return f"{name}: {len(losses)} epochs are too few to tell whether the bound has flattened."
    last, before = losses[-q:].mean(), losses[-2 * q : -q].mean()
    fall, gain = losses[0] - last, before - last
    if fall <= 0:
        return (
            f"{name}: validation loss {losses[0]:.0f} nats after epoch 1, {last:.0f} at the "
            "end: it did not fall."
        )
    share = gain / fall
    verdict = ("it has flattened (under 5% of the fall)" if share < FLAT_SHARE
               else "it is still falling (5% of the fall or more)")  # fmt: skip
    return (
        f"{name}: validation loss {losses[0]:.0f} nats after epoch 1, {last:.0f} averaged "
        f"over the last {q} epochs, {gain:.0f} nats ({gain / q:.1f} per epoch) better than the "
        f"{q} before them, {100 * share:.1f}% of the whole fall: {verdict}."
    )


def quality_sentences(f: Findings) -> str:
    """Prior-sample quality of the best run beside every reference run, at each T."""
    best = f.plan.best
    parts = []
    for t in f.plan.evaluation.temperatures:
        label, value = f.quality(best, t)
        if value is None:
            return f"Sample quality was not measured: {label}."
        line = f"At T={t} the best run's prior samples have {label} {_num(value)}"
        for name, run in f.plan.runs.items():
            other_label, other = f.quality(name, t) if run.role == "reference" else (None, None)
            other = other if other_label == label else None
            if other is not None:
                line += (
                    f" against {_num(other)} for {name} "
                    f"({'lower, better' if value < other else 'not lower'})"
                )
        sampler = f.plan.evaluation.sampler
        drawn_label, drawn = f.quality(best, t, sampler) if sampler else (None, None)
        if drawn is not None and drawn_label == label:
            line += f"; decoded from its {sampler} sampler instead, {_num(drawn)}"
        parts.append(line + ".")
    m, scale = f.metrics[best], []
    for key, what in (
        ("reconstructions", "its reconstructions"),
        (
            "samples_aggregate_gaussian",
            "decodings of the aggregate posterior's moment-matched Gaussian",
        ),
        ("train", "real training images (the floor)"),
    ):
        prefix = dict((lab, pre) for pre, lab in f.quality_kinds(best))[label]
        value = m.get(f"{prefix}_{key}")
        if value is not None:
            scale.append(f"{what} {_num(value)}")
    if scale:
        parts.append(f"For scale: {', '.join(scale)}.")
    parts.append(
        f"(Frechet distances to {m.get('sample_quality_num_images')} validation "
        "images; lower is better.)"
    )
    return " ".join(parts)


def _figure(f: Findings, file: str, caption: str, step: str, run: str | None = None) -> str:
    """A figure of a run (or of OUT/figures) embedded with its caption and its command."""
    plan = f.plan
    path = plan.figure(run, file) if run else os.path.join(plan.figures_dir, file)
    command = f.state["steps"].get(step, {}).get("command")
    text = f"![{caption}]({os.path.relpath(path, plan.output_dir)})\n\n*{caption}.*"
    return text + (f" Made by `{command}`." if command else "")


def _is_density(metrics: dict) -> bool:
    return "density" in metrics.get("bits_per_dim_convention", "")


def _report_bits_per_pixel(metrics: dict) -> str:
    """The report's figure (no dequantization term): meaningless for a density."""
    if _is_density(metrics):
        return "n/a (a density: see bits/dim)"
    return f"{metrics['report_bits_per_pixel']:.3f}"


def codec_sentence(f: Findings) -> str:
    """The lossless codecs' bits/dim on the images every model was evaluated on, beside the best
    run's and each reference run's ('' when tfvae-bpp stored none: runs evaluated before it
    did)."""
    measured = [m for m in f.metrics.values() if m.get("codec_bits_per_dim")]
    if not measured or f.plan.best is None:
        return ""
    codecs = measured[0]["codec_bits_per_dim"]
    parts = [f"{NAMES.get(c, c)} {r['bits_per_dim']:.3f} ± {r['bits_per_dim_standard_error']:.3f}"
             for c, r in codecs.items()]  # fmt: skip
    line = (f"The same {measured[0].get('num_images')} images stored losslessly, one file each: "
            f"{', '.join(parts)} bits/dim.")  # fmt: skip
    for name, who in _compared(f):
        m = f.metrics[name]
        bits, own = m.get("bits_per_dim"), m.get("codec_bits_per_dim")
        text = verdict(bits, codecs) if bits is not None and own == codecs else ""  # same images
        if "; " in text:  # '...; the model (x) beats ... but not ...'
            line += " " + text.split("; ", 1)[1].replace("the model (", who, 1) + "."
    return line


def _references(f: Findings) -> list[str]:
    return [n for n, r in f.plan.runs.items() if r.role == "reference"]


def _compared(f: Findings) -> list[tuple[str, str]]:
    """(run, how a sentence names it): the best of the report's runs, then each reference."""
    references = _references(f)
    best = "The best of the report's runs" if references else "The best model"
    return [(f.plan.best, f"{best} ({f.plan.best}, "), *((n, f"{n} (") for n in references)]


def _log_likelihood_table(f: Findings) -> str:
    rows = [
        "| run | log p(x) nats (± s.e.) | ELBO nats | IWAE-k bound nats (k of training) | "
        "report's bits per pixel |",
        "|---|---|---|---|---|",
    ]
    for name, m in f.metrics.items():
        bound = m[f"iwae_{min(f.configs[name].k, m['k'])}_bound_nats"]
        rows.append(
            f"| {name} | {_pm(-m['nll_nats'], m['nll_nats_standard_error'] or 0.0)} | "
            f"{m['elbo_nats']:.1f} | {bound:.1f} (k={f.configs[name].k}) | "
            f"{_report_bits_per_pixel(m)} |"
        )
    return "\n".join(rows)


def _header(f: Findings, command: str, versions: dict) -> list[str]:
    c, e, m = f.plan.base, f.plan.evaluation, f.metrics[f.plan.best]
    seconds = sum(f.state["steps"].get(s.key, {}).get("seconds", 0.0) for s in f.plan.steps)
    software = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        "# Experimenting with VAEs, reproduced",
        f"Made by `{command}`: {len(f.plan.steps)} steps, {_minutes(seconds)} of commands in all "
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
            if any(map(_is_density, f.metrics.values()))
            else ""
        )
        + "Training time: wall time of the training command. The best of the report's runs by "
        f"NLL is **{f.plan.best}**; the traversal, interpolation and sample figures and the "
        "export are of it"
        + (
            "; each reference run's own samples and traversal are under Reference runs."
            if _references(f)
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
        f"Rows are {best}'s most active latent dimensions, each named by the labelled factor it "
        "carries the most information on: "
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


def reference_sentences(f: Findings, name: str) -> str:
    """A reference run: its model, log p(x) against the best of the report's runs (paired, on
    the same images), each latent group's KL and active units, and its samples' quality at each
    temperature and sampler as a multiple of its reconstructions' distance."""
    c, m, best = f.configs[name], f.metrics[name], f.plan.best
    model = (f"latent groups {c.latent_groups}, {c.latent_channels} channels each, width "
             f"{c.width}" if c.architecture == "hierarchical" else
             f"width {c.width}, latent {c.latent_dim}, {c.upsampling} upsampling")  # fmt: skip
    command = f.state["steps"].get(f"train {name}", {}).get("command")
    lines = [
        f"{name}{f': `{command}`' if command else ''}, the {c.architecture} architecture "
        f"({model}), {c.likelihood} likelihood, k={c.k}, {c.epochs} epochs in "
        f"{_minutes(f.train_seconds(name))}."
    ]
    a, b = f.per_example(best), f.per_example(name)
    bits = [f.metrics[n].get("bits_per_dim") for n in (name, best)]
    same = all(getattr(c, k) == getattr(f.configs[best], k) for k in ("dataset", "image_size"))
    same &= all(
        m.get(k) == f.metrics[best].get(k) for k in ("num_images", "bits_per_dim_convention")
    )
    if same and None not in bits and a is not None and b is not None and len(a) == len(b) > 1:
        d = b - a  # log p(x) of the reference minus the best run's, image by image
        mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
        z = abs(mean) / sem if sem else float("inf")
        difference = f"{_pm(abs(mean), sem)} nats per image"
        if z <= CLEAR:
            relation = f"differs from that run's by {difference}, not distinguishable"
        else:
            relation = f"is {difference} {'above' if mean > 0 else 'below'} that run's"
        lines.append(
            f"Its NLL is {bits[0]:.3f} bits/dim against {bits[1]:.3f} for {best}: its log p(x) "
            + relation
            + f" (paired, same images, {z:.1f} s.e.)."
        )
    if m.get("kl_nats_per_group"):  # a hierarchy's groups, top down (tfvae-bpp)
        shapes = [f"{r}x{r}x{c.latent_channels}"
                  for r, n in config_lib.parse_latent_groups(c.latent_groups, c.image_size)
                  for _ in range(n)]  # fmt: skip
        parts = [
            f"{shape}: KL {kl:.1f} nats, {active} of {size} latents active"
            for shape, kl, active, size in zip(shapes, m["kl_nats_per_group"],
                                               m["active_units_per_group"],
                                               m["latents_per_group"], strict=True)
        ]  # fmt: skip
        lines.append(f"Per latent group, top down: {'; '.join(parts)}.")
    label, reconstructions = None, None
    for prefix, kind in f.quality_kinds(name):
        if m.get(f"{prefix}_reconstructions") is not None:
            label, reconstructions = kind, m[f"{prefix}_reconstructions"]
            break
    if reconstructions:
        sampler = f.plan.evaluation.sampler
        measured = []
        for source in ["", *([sampler] if sampler else [])]:
            for t in f.plan.evaluation.temperatures:
                kind, value = f.quality(name, t, source)
                if value is not None and kind == label:
                    what = f"{source} sampler" if source else "prior"
                    measured.append((value, f"{what} at T={t} {_num(value)}"))
        if measured:
            best_value, best_text = min(measured)
            lines.append(
                f"Its samples' {label} (its reconstructions {_num(reconstructions)}): "
                + ", ".join(text for _, text in measured)
                + f"; the closest, the {best_text.rsplit(' ', 1)[0]}, is "
                f"{best_value / reconstructions:.2f}x its reconstructions'."
            )
    return " ".join(lines)


def _reference_runs(f: Findings) -> list[str]:
    """Each reference run's numbers, samples at each temperature and traversal."""
    names = _references(f)
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
        "\n".join(f"- {s.key}, {_minutes(steps[s.key].get('seconds'))}: "
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
    rewritten relative to the README), headings demoted."""
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
