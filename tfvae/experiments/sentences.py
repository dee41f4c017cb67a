"""The numbers of a reproduction read into `Findings`, and the tables and sentences of its
REPORT.md generated from them (experiments.report assembles the document): every claim with its
standard error, a difference called one only beyond `CLEAR` standard errors.
"""

from __future__ import annotations

import math
import os

import numpy as np

from tfvae import config as config_lib
from tfvae.evaluation.codecs import NAMES, verdict
from tfvae.runtime.files import PER_EXAMPLE_FILE, read_json

CLEAR = 2.0  # a difference is called one only beyond this many standard errors
FLAT_SHARE = 0.05  # flattened: the last quarter of epochs gained under this share of the fall


def minutes(seconds) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(value: float) -> str:
    """A distance with three significant digits, without a decimal point from 100 up."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def pm(mean, sem, digits=1) -> str:
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
                    pm(m["nll_nats"], m["nll_nats_standard_error"] or 0.0),
                    f"{bits:.3f}" if bits is not None else "n/a (no likelihood)",
                    f"{m['active_units']} of {m.get('latent_dim', c.latent_dim)}",
                    pm(*board, digits=4) if board else "n/a",
                    *quality,
                    minutes(f.train_seconds(name)),
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
        f"{f.configs[n].upsampling} {pm(*f.checkerboard[n], digits=4)}" for n in ranked
    )
    text = f"Checkerboard energy, most first: {text}"
    text += f"; real validation images {pm(*real, digits=4)}." if real else "."
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
            f"(k={k}) minus that of the VAE is {pm(mean, sem)} nats per image (paired standard "
            f"error): {verdict}."
        )
    curves = {key.split(" (k=")[0]: value for key, value in f.curves.items()}
    names = [n for n in (vae, iwae) if n in curves]
    if names:
        average = "mean_validation_loss"
        parts = [
            f"{n} {pm(curves[n][average], curves[n][average + '_standard_error'])}" for n in names
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
            f"Checkerboard energy of their samples: VAE {pm(a, sa, 4)}, IWAE {pm(b, sb, 4)} "
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


def is_density(metrics: dict) -> bool:
    return "density" in metrics.get("bits_per_dim_convention", "")


def report_bits_per_pixel(metrics: dict) -> str:
    """The report's figure (no dequantization term): meaningless for a density."""
    if is_density(metrics):
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
    for name, who in compared(f):
        m = f.metrics[name]
        bits, own = m.get("bits_per_dim"), m.get("codec_bits_per_dim")
        text = verdict(bits, codecs) if bits is not None and own == codecs else ""  # same images
        if "; " in text:  # '...; the model (x) beats ... but not ...'
            line += " " + text.split("; ", 1)[1].replace("the model (", who, 1) + "."
    return line


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
        f"{minutes(f.train_seconds(name))}."
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
        difference = f"{pm(abs(mean), sem)} nats per image"
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


def reference_names(f: Findings) -> list[str]:
    return [n for n, r in f.plan.runs.items() if r.role == "reference"]


def compared(f: Findings) -> list[tuple[str, str]]:
    """(run, how a sentence names it): the best of the report's runs, then each reference."""
    references = reference_names(f)
    best = "The best of the report's runs" if references else "The best model"
    return [(f.plan.best, f"{best} ({f.plan.best}, "), *((n, f"{n} (") for n in references)]
