"""A search's results, built from the trials' own records on disk (TUNE_DIR/trials/*/tuning.json).

Reading the records rather than keras-tuner's oracle makes the table the same for a one-process
search and a distributed one (a worker's oracle client holds no trials): a table (Markdown),
results.csv and results.json, results.png (objective per trial and against each searched
hyper-parameter) and best.flags (the best trial's flags, for `python -m tfvae.train`).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import statistics

from tfvae import config as config_lib
from tfvae.runtime import files

RECORD = "tuning.json"  # a trial's own record, beside its checkpoints


def collect(tune_dir: str) -> list[dict]:
    """The trials' records, ordered by trial id. Each is a dict with trial_id, tuner_id, values
    (searched hyper-parameters), epochs, parent (hyperband), status (running, stopped, failed,
    completed), message, objective (validation IWAE-score_k bound, bits/dim), bound_nats,
    active_units, start_steps (the checkpoint step at each start: [0] for a trial run once,
    [0, 40] for one resumed at step 40, [120] for one continuing a hyperband parent), final_step,
    wall_seconds (over all its starts) and config."""
    rows = []
    for path in sorted(glob.glob(os.path.join(tune_dir, "trials", "*", RECORD))):
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def best(rows: list[dict]) -> dict | None:
    """The completed trial with the lowest objective (the first of equals), or None."""
    done = [r for r in rows if r["status"] == "completed"]
    return min(done, key=lambda r: r["objective"]) if done else None


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _wall(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def format_table(rows: list[dict], names: list[str], score_k: int = 5) -> str:
    """A Markdown table of every trial, best objective in bold, then one line per failure and
    a summary of what the search found (best, spread, best per choice)."""
    top = best(rows)
    header = ["trial", *names, "epochs", f"IWAE-{score_k} bits/dim", "status", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        epochs = str(r.get("epochs", ""))
        if r.get("parent"):
            epochs += f" (from {r['parent']})"
        objective = f"{r['objective']:.4f}" if r["status"] == "completed" else "-"
        if r is top:
            objective = f"**{objective}**"
        cells = [r["trial_id"], *(_format(r["values"].get(n, "")) for n in names), epochs,
                 objective, r["status"], _wall(r.get("wall_seconds", 0.0))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"trial {r['trial_id']} {r['status']}: {r['message']}" for r in rows if r["message"]]
    return "\n".join(lines + summary_lines(rows, names))


def summary_lines(rows: list[dict], names: list[str]) -> list[str]:
    """What the search found: the best trial, the spread of completed trials, best per choice."""
    done = [r for r in rows if r["status"] == "completed"]
    top = best(rows)
    if not top:
        return [f"no completed trial among {len(rows)}."]
    values = sorted(r["objective"] for r in done)
    lines = [
        f"best: trial {top['trial_id']}, {top['objective']:.4f} bits/dim; {len(done)} of "
        f"{len(rows)} trials completed, spanning {values[0]:.4f} to {values[-1]:.4f} "
        f"(median {statistics.median(values):.4f})."
    ]
    for name in names:
        by_value = {}
        for r in done:
            by_value.setdefault(r["values"].get(name), []).append(r["objective"])
        if 1 < len(by_value) <= 6 and len(by_value) < len(done):  # a choice, not a range
            parts = [f"{_format(v)} {min(o):.4f} (n={len(o)})" for v, o in sorted(by_value.items())]
            lines.append(f"best per {name}: " + ", ".join(parts) + ".")
    return lines


def _columns(names):
    return ["trial_id", "status", *names, "epochs", "parent", "objective", "bound_nats",
            "active_units", "start_steps", "final_step", "wall_seconds", "tuner_id",
            "message"]  # fmt: skip


def write(tune_dir: str, rows: list[dict], space: list[str], score_k: int = 5) -> dict:
    """Writes results.{csv,json,md,png} and, with a completed trial, best.flags; returns paths.

    `space` holds the search entries as text (NAME=SPEC), in order.
    """
    names = [entry.split("=", 1)[0] for entry in space]
    paths = {e: os.path.join(tune_dir, f"results.{e}") for e in ("csv", "json", "md", "png")}
    table = io.StringIO()
    writer = csv.DictWriter(table, _columns(names), extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, **r["values"]})
    files.write_atomically(paths["csv"], table.getvalue())
    objective = f"validation IWAE-{score_k} bound in bits/dim, lower is better"
    files.write_json(paths["json"], {"objective": objective, "space": space, "trials": rows})
    files.write_atomically(paths["md"], format_table(rows, names, score_k) + "\n")
    plot(rows, space, paths["png"], objective)
    top = best(rows)
    if top:
        paths["flags"] = os.path.join(tune_dir, "best.flags")
        files.write_atomically(paths["flags"], best_flags(top, tune_dir, len(rows), objective))
    return paths


def best_flags(row: dict, tune_dir: str, num_trials: int, objective: str) -> str:
    """The best trial's Config as a flagfile for `python -m tfvae.train`, training it afresh
    in TUNE_DIR/best (its own run stays in TUNE_DIR/trials/ID)."""
    config = config_lib.Config(**row["config"])
    header = (
        f"Best of {num_trials} trials in {tune_dir}: trial {row['trial_id']}, "
        f"{row['objective']:.4f} bits/dim ({objective}).\n"
        f"Its run: {os.path.join(tune_dir, 'trials', row['trial_id'])}. Train it afresh with\n"
        f"  python -m tfvae.train --flagfile={os.path.join(tune_dir, 'best.flags')}"
    )
    return config_lib.to_flagfile(config, {"model_dir": os.path.join(tune_dir, "best")}, header)


def plot(rows: list[dict], space: list[str], path: str, objective: str) -> None:
    """results.png: the objective per trial, then against each searched hyper-parameter (space:
    entries as text; a choice's values in their given order, a range on its own scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(space) + 1
    columns = panels if panels <= 4 else 3
    count = -(-panels // columns)
    fig, axes = plt.subplots(count, columns, figsize=(4 * columns, 3.6 * count), squeeze=False)
    axes = axes.ravel()
    done = [r for r in rows if r["status"] == "completed"]
    _plot_trials(fig, axes[0], rows, done)
    for ax, entry in zip(axes[1:], space, strict=False):
        _plot_against(ax, done, *entry.split("=", 1))
    top = best(rows)
    for ax in axes[:panels]:
        ax.set_ylabel("bits/dim", fontsize=9)
        ax.grid(alpha=0.3)
        if top:
            ax.axhline(top["objective"], color="tab:orange", linewidth=0.8, zorder=1)
    for ax in axes[panels:]:
        ax.axis("off")
    fig.suptitle(f"{len(rows)} trials: {objective}; orange line: best", fontsize=10)
    fig.tight_layout()
    files.write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def _plot_trials(fig, ax, rows, done):
    """The objective per trial id, coloured by epochs when they differ (hyperband)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r.get("epochs", 0) for r in done]
    x = [int(r["trial_id"]) for r in done]
    points = ax.scatter(x, [r["objective"] for r in done], c=epochs, cmap="viridis", zorder=3)
    if len(set(epochs)) > 1:
        fig.colorbar(points, ax=ax, label="epochs")
    for r in rows:
        if r["status"] != "completed":
            ax.axvline(int(r["trial_id"]), color="tab:red", alpha=0.4, linestyle=":")
    ax.set_title("per trial (red: not completed)", fontsize=9)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plot_against(ax, done, name, spec):
    """The objective against one searched flag: a column per choice, or the searched range."""
    from matplotlib.ticker import MaxNLocator, NullFormatter

    values = [r["values"].get(name) for r in done]
    objectives = [r["objective"] for r in done]
    if ":" not in spec:
        choices = spec.split(",")
        ax.scatter([choices.index(str(v)) for v in values], objectives, zorder=3)
        ax.set_xticks(range(len(choices)), choices)
        ax.set_xlim(-0.5, len(choices) - 0.5)
    else:
        ax.scatter(values, objectives, zorder=3)
        low, high = (float(v) for v in spec.split(":")[:2])
        if spec.endswith(":log"):
            ax.set_xscale("log")
            ax.set_xlim(low / 1.2, high * 1.2)
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_xlim(low - 0.05 * (high - low), high + 0.05 * (high - low))
            ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(name)
