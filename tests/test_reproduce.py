"""tools/reproduce.py: the plan, resuming, and one tiny end-to-end reproduction with REPORT.md."""

import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

from tests.factory import main_of, run_command
from tfvae import config as config_lib
from tfvae.experiments import report, reproduce, sentences
from tfvae.experiments.plan import Evaluation, Plan, Step


def test_plan_trains_each_distinct_setting_once(tmp_path):
    base = config_lib.Config(dataset="builtin", k=1)
    plan = Plan(base, str(tmp_path))
    assert list(plan.runs) == ["vae_deconv", "vae_nearest", "vae_bilinear", "iwae5_deconv"]
    assert (plan.vae, plan.iwae) == ("vae_deconv", "iwae5_deconv")  # step 1's deconv is reused
    plan = Plan(dataclasses.replace(base, k=5), str(tmp_path), iwae_k=5)
    assert sorted(plan.runs) == ["iwae5_bilinear", "iwae5_deconv", "iwae5_nearest", "vae_deconv"]
    assert len(Plan(dataclasses.replace(base, k=3), str(tmp_path)).runs) == 5
    trains = [s.key for s in plan.steps if s.key.startswith("train")]
    assert len(trains) == 4
    with pytest.raises(ValueError, match="--iwae_k"):
        Plan(base, str(tmp_path), iwae_k=1)
    with pytest.raises(ValueError, match="Flag `--eval_k` is 0; it must be >= 1"):
        Evaluation(k=0)
    with pytest.raises(ValueError, match="--quality_num_images"):
        Evaluation(quality_num_images=1)
    with pytest.raises(ValueError, match="--quality_temperature"):
        Evaluation(temperatures=(1.0, 0.0))


def test_fingerprint_follows_flagfile_content_and_dependencies(tmp_path):
    flagfile = tmp_path / "a.flags"
    flagfile.write_text("--epochs=2\n")
    command = ["python", "-m", "tfvae.train", f"--flagfile={flagfile}"]
    first = reproduce.fingerprint(command, [])
    assert reproduce.fingerprint(command, []) == first
    flagfile.write_text("--epochs=3\n")
    assert reproduce.fingerprint(command, []) != first
    assert reproduce.fingerprint(["x"], ["a"]) != reproduce.fingerprint(["x"], ["b"])


class _StubPlan:
    """A plan of plain Python commands: the Runner's bookkeeping without TensorFlow."""

    def __init__(self, output_dir, commands):
        self.output_dir, self.best = output_dir, None
        self.steps = [
            Step(key, lambda p, c=code: ["python", "-c", c],
                           lambda p, k=key: [os.path.join(output_dir, k)], deps)
            for key, code, deps in commands
        ]  # fmt: skip

    def write_flagfiles(self):
        pass


def _touch(name):
    return f"open({name!r}, 'w').close()"


def test_runner_skips_finished_steps_and_names_a_failing_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = [("a", _touch("a"), []), ("b", _touch("b"), ["a"])]
    runner = reproduce.Runner(_StubPlan(str(tmp_path), steps))
    runner.run()
    assert runner.ran == ["a", "b"]
    runner = reproduce.Runner(_StubPlan(str(tmp_path), steps))
    runner.run()
    assert runner.ran == []  # done: same fingerprints, outputs present
    os.remove("b")  # a missing output is made again
    runner = reproduce.Runner(_StubPlan(str(tmp_path), steps))
    runner.run()
    assert runner.ran == ["b"]
    changed = [("a", _touch("a") + "  # changed", []), ("b", _touch("b"), ["a"])]
    runner = reproduce.Runner(_StubPlan(str(tmp_path), changed))
    runner.run()
    assert runner.ran == ["a", "b"]  # a new command is redone, and what depends on it
    failing = changed + [("c", "import sys; sys.exit(3)", [])]
    with pytest.raises(RuntimeError, match="step 'c' failed with exit code 3"):
        reproduce.Runner(_StubPlan(str(tmp_path), failing)).run()
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state["steps"]) == {"a", "b"}
    assert "[3/3 |" in capsys.readouterr().out


_STOPPABLE = """
import os, signal, sys, time
if os.path.exists("resume"):
    open("b", "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))  # as a training: checkpoint, exit 75
open("started", "w").close()
time.sleep(120)
"""


def test_a_signal_stops_the_running_step_and_a_rerun_redoes_only_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = [("a", _touch("a"), []), ("b", _STOPPABLE, ["a"]), ("c", _touch("c"), ["b"])]

    def stop_when_b_runs():
        deadline = time.monotonic() + 60
        while not os.path.exists("started") and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # to the runner, which passes it on to b

    stopper = threading.Thread(target=stop_when_b_runs)
    stopper.start()
    runner = reproduce.Runner(_StubPlan(str(tmp_path), steps))
    with pytest.raises(reproduce.Stopped, match="stopped during b .exit code 75"):
        runner.run()
    stopper.join()
    assert runner.ran == ["a"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state["steps"]) == {"a"} and state["partial_seconds"]["b"] >= 0  # time kept
    assert signal.getsignal(signal.SIGTERM) is not runner._on_signal  # handlers restored
    open("resume", "w").close()
    runner = reproduce.Runner(_StubPlan(str(tmp_path), steps))
    runner.run()
    assert runner.ran == ["b", "c"]  # the finished step is not redone


def test_the_command_exits_75_and_says_how_to_resume(tmp_path, monkeypatch, data_dir):
    def stopped(runner):
        raise reproduce.Stopped("stopped during train vae_nearest (exit code 75)")

    monkeypatch.setattr(reproduce.Runner, "run", stopped)
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text(TINY.format(data=data_dir, out=tmp_path / "out"))
    result = run_command("reproduce", f"--flagfile={flagfile}")
    assert result.returncode == reproduce.EXIT_STOPPED, result.stderr
    assert "run the same command again to resume" in result.stderr + result.stdout
    assert not (tmp_path / "out" / "REPORT.md").exists()


def test_flattening_is_called_only_when_the_last_quarter_gains_little():
    flat = np.concatenate([np.linspace(1000, 500, 10), np.full(30, 500.0)])
    assert "it has flattened" in sentences.flattening_sentence("run", flat)
    falling = np.linspace(1000, 500, 40)
    assert "it is still falling" in sentences.flattening_sentence("run", falling)
    assert "too few" in sentences.flattening_sentence("run", [3.0, 2.0])


TINY = """--dataset=builtin
--data_dir={data}
--image_size=16
--train_size=64
--val_size=32
--width=8
--latent_dim=4
--k=1
--batch_size=16
--epochs=2
--learning_rate=0.001
--beta_1=0.9
--log_every_steps=2
--output_dir={out}
--eval_k=8
--eval_num_images=16
--eval_batch_size=8
--chunk_size=4
--quality_num_images=16
--classifier_epochs=1
--classifier_train_size=200
--fid=off
--sampler=gaussian
"""
HIERARCHY = """--dataset=builtin
--data_dir={data}
--image_size=16
--train_size=64
--val_size=32
--architecture=hierarchical
--latent_groups=4:1,8:1
--latent_channels=2
--residual_cells=1
--width=8
--k=1
--batch_size=16
--epochs=1
--learning_rate=0.001
"""  # a reference run measured beside the report's: the hierarchical VAE


def test_tiny_reproduction_reports_and_a_rerun_does_nothing(tmp_path, data_dir, monkeypatch):
    # The plan's commands run here through their main(argv) (no TensorFlow start per step);
    # the tests above run a Runner's steps as processes, the way tfvae-reproduce does.
    monkeypatch.setattr(reproduce, "Runner", functools.partial(reproduce.Runner, execute=main_of))
    out = tmp_path / "out"
    flagfile, reference = tmp_path / "tiny.flags", tmp_path / "hierarchy.flags"
    flagfile.write_text(
        TINY.format(data=data_dir, out=out) + f"--reference_flagfiles={reference}\n"
    )
    reference.write_text(HIERARCHY.format(data=data_dir))
    # 1. Every step, each an installed command in its own process, then REPORT.md.
    result = run_command("reproduce", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\[1/29 \| [0-9:]+\] train vae_deconv: tfvae-train", result.stdout)
    assert "29 steps run, 0 already done" in result.stdout
    document = (out / "REPORT.md").read_text()
    _check_report(document, out)
    row = next(line for line in document.splitlines() if line.startswith("| reference_hierarchy"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "hierarchical (top-down)" and cells[6] == f"{cells[6].split()[0]} of 160"
    assert all(cells) and not any(c.startswith("n/a") for c in cells), row
    # 2. Again: nothing runs, nothing is rewritten.
    stamp = (out / "REPORT.md").stat().st_mtime_ns
    state = (out / "state.json").read_text()
    result = run_command("reproduce", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 steps run, 29 already done" in result.stdout and ": tfvae-" not in result.stdout
    assert (out / "REPORT.md").stat().st_mtime_ns == stamp
    assert (out / "state.json").read_text() == state


def _check_report(document, out):
    """Every cell of the models table filled, every embedded figure present and non-empty."""
    table = [line for line in document.splitlines() if line.startswith("| ")]
    header = next(line for line in table if line.startswith("| run | upsampling"))
    rows = [line for line in table if re.match(r"\| (vae|iwae)", line)]
    assert len(rows) >= 2 * 4  # the models table and the log-likelihood table
    for row in [header] + rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(cells) and not any(c.startswith("n/a") for c in cells), row
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", document)
    assert len(figures) >= 10
    for figure in figures:
        assert (out / figure).stat().st_size > 1000, figure
    assert (out / "export" / "1" / "saved_model.pb").exists()
    for needed in ("## All models", "IWAE (k=5) minus that of the VAE", "Checkerboard energy",
                   "z[", "Mean absolute change", "Prior samples of",
                   "decoded from its gaussian sampler", "images stored losslessly, one file each",
                   "The best of the report's runs (", "## Reference runs",
                   "Per latent group, top down: 4x4x2: KL", "Traversals of reference_hierarchy",
                   "Its NLL is", "x its reconstructions'.",
                   "factor FD, gaussian sampler, T=1.0"):  # fmt: skip
        assert needed in document


def test_readme_section_is_replaced_with_the_report_and_its_figures(tmp_path):
    out = tmp_path / "out"
    (out / "runs" / "a" / "figures").mkdir(parents=True)
    (out / "runs" / "b" / "figures").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "runs" / "a" / "figures" / "traversal.png").write_bytes(b"png")
    (out / "runs" / "b" / "figures" / "traversal.png").write_bytes(b"png of b")
    (out / "figures" / "loss_curves.png").write_bytes(b"curves")
    (out / "REPORT.md").write_text(
        "# Title\n\n## Part\n\n![t](runs/a/figures/traversal.png)\n\n"
        "![u](runs/b/figures/traversal.png)\n\n![c](figures/loss_curves.png)\n\n"
        "configs: [a.flags](configs/a.flags)\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"# R\n\nbefore\n\n{report.BEGIN}\nold\n{report.END}\n\nafter\n")
    report.update_readme(str(readme), str(out / "REPORT.md"), str(tmp_path / "docs" / "f"))
    text = readme.read_text()
    assert "old" not in text and text.startswith("# R\n\nbefore") and text.endswith("after\n")
    assert "#### Title" in text and "##### Part" in text
    assert "![t](docs/f/a_traversal.png)" in text and "`a.flags`" in text
    assert "![u](docs/f/b_traversal.png)" in text and "![c](docs/f/loss_curves.png)" in text
    assert (tmp_path / "docs" / "f" / "a_traversal.png").read_bytes() == b"png"
    assert (tmp_path / "docs" / "f" / "b_traversal.png").read_bytes() == b"png of b"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="reproduce:begin"):
        report.update_readme(str(readme), str(out / "REPORT.md"), str(tmp_path / "docs" / "f"))


def test_a_run_trained_with_other_flags_is_refused_before_anything_is_written(tmp_path):
    base = config_lib.Config(dataset="builtin", k=1, latent_dim=8)
    plan = Plan(base, str(tmp_path))
    saved = os.path.join(plan.runs["vae_nearest"].model_dir, "config.json")
    config_lib.save(dataclasses.replace(plan.runs["vae_nearest"].config, latent_dim=4), saved)
    with pytest.raises(ValueError, match="vae_nearest was trained with other flags.*latent_dim"):
        plan.write_flagfiles()
    assert not os.path.exists(plan.runs["vae_deconv"].flagfile)
    config_lib.save(dataclasses.replace(plan.runs["vae_nearest"].config, epochs=400), saved)
    plan.write_flagfiles()  # more epochs: the run continues
    with open(plan.runs["vae_nearest"].flagfile) as f:
        assert "--upsampling=nearest\n" in f.read()


def test_steps_run_the_commands_installed_beside_this_interpreter():
    bin_dir = os.path.dirname(sys.executable)
    assert reproduce.installed_command(["tfvae-train", "--k=2"]) == [
        os.path.join(bin_dir, "tfvae-train"), "--k=2"
    ]  # fmt: skip
    assert reproduce.installed_command(["python", "-c", "0"]) == [sys.executable, "-c", "0"]


def _findings_with_a_reference(tmp_path, reference_metrics, reference_config=None):
    """A plan whose best run and one hierarchical reference have hand-written results."""
    base = config_lib.Config(dataset="builtin", image_size=32, k=1)
    tmp_path.mkdir(parents=True, exist_ok=True)
    flagfile = tmp_path / "h.flags"
    flagfile.write_text("--architecture=hierarchical\n")
    evaluation = Evaluation(sampler="flow", temperatures=(1.0, 0.7))
    plan = Plan(base, str(tmp_path), evaluation, reference_flagfiles=[str(flagfile)])
    plan.best = "iwae5_deconv"
    hierarchy = reference_config or dataclasses.replace(
        base, architecture="hierarchical", latent_groups="4:1,8:2", latent_channels=8
    )
    best = np.array([-100.0, -110.0, -120.0, -130.0])
    gains = {"reference_h": [10.0, 12.0, 14.0, 12.0]}  # mean 12, s.e. sqrt(8/3)/2 = 0.816
    same = {"num_images": 4, "bits_per_dim_convention": "discrete", "codec_bits_per_dim": {
        "png": {"bits_per_dim": 2.3, "bits_per_dim_standard_error": 0.01},
        "webp": {"bits_per_dim": 1.8, "bits_per_dim_standard_error": 0.01}}}  # fmt: skip
    for name, run in plan.runs.items():
        config = hierarchy if name == "reference_h" else plan.runs[name].config
        config_lib.save(config, os.path.join(run.model_dir, "config.json"))
        metrics = {"iwae5_deconv": {**same, "bits_per_dim": 3.5}}.get(name)
        metrics = {**same, **reference_metrics} if name == "reference_h" else metrics
        if metrics:
            with open(os.path.join(run.model_dir, "metrics.json"), "w") as f:
                json.dump(metrics, f)
            log_px = best + np.array(gains.get(name, 0.0))
            np.savez(os.path.join(run.model_dir, "log_likelihood_per_example.npz"),
                     log_likelihood=log_px)  # fmt: skip
    state = {"steps": {"train reference_h": {"command": "tfvae-train --flagfile=h.flags",
                                             "seconds": 2400.0}}}  # fmt: skip
    return sentences.Findings(plan, state)


def test_a_reference_runs_sentences_come_from_its_numbers(tmp_path):
    hierarchy = {
        "bits_per_dim": 2.2, "kl_nats_per_group": [3.5, 20.25, 7.0],
        "active_units_per_group": [10, 300, 2], "latents_per_group": [128, 512, 512],
        "factor_fd_reconstructions": 100.0, "factor_fd_samples_t1.0": 400.0,
        "factor_fd_samples_t0.7": 250.0, "factor_fd_samples_flow_t1.0": 180.0,
        "factor_fd_samples_flow_t0.7": 150.0, "fid_skipped": "no Inception weights",
    }  # fmt: skip
    f = _findings_with_a_reference(tmp_path, hierarchy)
    text = sentences.reference_sentences(f, "reference_h")
    assert text.startswith("reference_h: `tfvae-train --flagfile=h.flags`, the hierarchical")
    assert "in 0:40:00." in text
    paired = (
        "Its NLL is 2.200 bits/dim against 3.500 for iwae5_deconv: its log p(x) is 12.0 ± 0.8 "
        "nats per image above that run's (paired, same images, 14.7 s.e.)"
    )
    assert paired in text
    assert ("4x4x8: KL 3.5 nats, 10 of 128 latents active; 8x8x8: KL 20.2 nats, 300 of 512 "
            "latents active; 8x8x8: KL 7.0 nats, 2 of 512") in text  # fmt: skip
    assert "the closest, the flow sampler at T=0.7, is 1.50x its reconstructions'" in text
    codecs = sentences.codec_sentence(f)
    assert "The best of the report's runs (iwae5_deconv, 3.500) does not beat PNG." in codecs
    assert "reference_h (2.200) beats PNG but not WebP (1.800)." in codecs


def test_a_reference_not_comparable_with_the_best_run_gets_no_paired_sentence(tmp_path):
    unmeasured = _findings_with_a_reference(tmp_path / "a", {"bits_per_dim": None})
    text = sentences.reference_sentences(unmeasured, "reference_h")
    assert "Its NLL" not in text and "Per latent group" not in text
    assert "reference_h (" not in sentences.codec_sentence(unmeasured)
    other = config_lib.Config(dataset="builtin", image_size=16, k=1)
    smaller = _findings_with_a_reference(tmp_path / "b", {"bits_per_dim": 2.0}, other)
    text = sentences.reference_sentences(smaller, "reference_h")
    assert "Its NLL" not in text and "the dcgan architecture (width" in text


STUDY = """--dataset=builtin
--data_dir={data}
--image_size=16
--train_size=64
--val_size=32
--width=8
--latent_dim=4
--k=1
--batch_size=16
--epochs=1
--log_every_steps=2
--output_dir={out}
--eval_k=4
--eval_num_images=16
--eval_batch_size=8
--chunk_size=4
--score_num_images=16
--score_points=2
--variant=vae
--variant=beta_vae:kl_weight=4
--seeds=0,1
"""


def test_a_tiny_study_pages_each_variants_mean_and_spread_over_seeds(
    tmp_path, data_dir, monkeypatch
):
    monkeypatch.setattr(reproduce, "Runner", functools.partial(reproduce.Runner, execute=main_of))
    out, flagfile = tmp_path / "out", tmp_path / "study.flags"
    flagfile.write_text(STUDY.format(data=data_dir, out=out))
    result = run_command("reproduce", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "14 steps run, 0 already done" in result.stdout  # 4 x (train, bpp, scores), 2 traversals
    configs = {r: config_lib.load(str(out / "runs" / r / "config.json"))
               for r in ("vae_seed0", "vae_seed1", "beta_vae_seed0", "beta_vae_seed1")}  # fmt: skip
    assert [c.seed for c in configs.values()] == [0, 1, 0, 1]
    assert [c.kl_weight for c in configs.values()] == [1.0, 1.0, 4.0, 4.0]
    page = (out / "REPORT.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1]
            for line in page.splitlines() if line.startswith("| ")}  # fmt: skip
    assert [c.strip() for c in rows["measure"]] == ["vae", "beta_vae"]
    metrics = {r: json.loads((out / "runs" / r / "metrics.json").read_text()) for r in configs}
    keys = ["bits_per_dim", "active_units", "mig", "dci_disentanglement", "sap", "modularity",
            "explicitness_test", "beta_vae_eval", "factor_vae_eval"]  # fmt: skip
    for key in keys:
        for column, variant in enumerate(["vae", "beta_vae"]):
            runs = [m for r, m in metrics.items() if r.startswith(variant + "_seed")]
            values = [m.get(key, m["disentanglement"].get(key)) for m in runs]
            values = [v for v in values if np.isfinite(v)]  # a split of one class: NaN, left out
            if not values:
                assert rows[key][column].strip() == "n/a", (key, rows[key])
                continue
            mean = np.mean(values)  # and the spread, independently of study.spread
            sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cell = re.fullmatch(r"(\S+) ± (\S+) \(n=(\d)\)", rows[key][column].strip())
            assert cell and int(cell[3]) == len(values), (key, rows[key])
            assert abs(float(cell[1]) - mean) <= 5e-4 and abs(float(cell[2]) - sd) <= 5e-4, key
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
        assert (out / figure).stat().st_size > 1000, figure
    assert "`--kl_weight=4`" in page and "z[" in page
    readme = tmp_path / "docs" / "study.md"  # a missing page: created with the page in it
    result = run_command("reproduce", f"--flagfile={flagfile}", f"--readme={readme}",
                         f"--readme_figures={tmp_path / 'docs' / 'figures'}")  # fmt: skip
    assert "0 steps run, 14 already done" in result.stdout
    assert "#### Training objectives compared" in readme.read_text()
    assert (tmp_path / "docs" / "figures" / "vae_seed0_traversal.png").exists()
    result = run_command("reproduce", f"--flagfile={flagfile}", "--variant=x:bogus=1")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "Flag `--variant` 'x:bogus=1': Unknown command line flag 'bogus'" in result.stderr


def test_the_study_flagfile_plans_four_objectives_by_two_seeds(tmp_path):
    import copy

    from tfvae.cli import reproduce as command
    from tfvae.experiments import study

    values = copy.deepcopy(command.FLAG_DEFINITIONS)
    values(["tfvae-reproduce", "--flagfile=configs/disentangle_quick.flags"])
    seeds = [int(s) for s in values.seeds]
    plan = study.StudyPlan(config_lib.from_flags(values), str(tmp_path), values.variant, seeds)
    assert list(plan.variants) == ["vae", "beta_vae", "beta_tcvae", "factor_vae"]
    configs = {name: run.config for name, run in plan.runs.items()}
    assert len(configs) == 8 and {c.latent_dim for c in configs.values()} == {10}
    assert configs["beta_vae_seed1"].kl_weight == 4 and configs["beta_vae_seed1"].seed == 1
    assert configs["beta_tcvae_seed0"].objective == "beta_tcvae"
    assert (configs["factor_vae_seed0"].objective, configs["factor_vae_seed0"].tc_weight) == (
        "factor_vae",
        20.0,
    )
