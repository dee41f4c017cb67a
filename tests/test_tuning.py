"""Hyper-parameter search: space parsing, trials as runs, hyperband warm starts, resume, failures,
and a chief with two workers over 127.0.0.1."""

import csv
import math
import os
import signal
import time

import pytest
from absl import flags

from tests.factory import tiny_config_for
from tfvae import config as config_lib
from tfvae import tuning
from tfvae.runtime import stopping
from tfvae.training import loop, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = "upsampling=deconv,nearest,bilinear latent_dim=3,4 learning_rate=1e-4:3e-3:log"


@pytest.fixture(scope="module")
def base(data_dir):
    """A 16x16 run of 4 steps per epoch, data cached beside the other tests' (conftest)."""
    return tiny_config_for(
        data_dir, train_size=64, val_size=32, latent_dim=4, beta_1=0.9, log_every_steps=2
    )


@pytest.fixture(scope="module")
def random_search(base, tmp_path_factory):
    tune_dir = str(tmp_path_factory.mktemp("random"))
    return tune_dir, tuning.search(base, SPACE, tune_dir, "random", max_trials=3)


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_seconds", "start_steps")} for r in rows]


def test_a_search_space_parses_into_choices_and_ranges(base):
    entries = tuning.parse_search("upsampling=deconv,nearest beta_1=0.5:0.9 width=4:16:log", base)
    assert [str(e) for e in entries] == [
        "upsampling=deconv,nearest", "beta_1=0.5:0.9:linear", "width=4:16:log",
    ]  # fmt: skip
    space = tuning.hyperparameters(entries)
    assert [type(h).__name__ for h in space.space] == ["Choice", "Float", "Int"]
    values = {"upsampling": "nearest", "beta_1": 0.7, "width": 8, "tuner/epochs": 3}
    config = tuning.trial_config(base, values)
    assert (config.upsampling, config.beta_1, config.width, config.epochs) == ("nearest", 0.7, 8, 3)


@pytest.mark.parametrize(
    "space,tuner,message",
    [
        ("latent=3,4", "random", "'latent' is not a Config field; accepted: architecture,"),
        ("latent_dim=0,4", "random", "latent_dim=0,4: Flag `--latent_dim` is 0; it must be"),
        ("latent_dim=3.5,4", "random", "'3.5' is not a valid int for `--latent_dim`"),
        ("likelihood=gaussian,bernoulli", "random", "likelihood bernoulli gives no bits/dim"),
        ("upsampling=a:b", "random", "ranges are lo:hi or lo:hi:log, for int and float fields"),
        ("learning_rate=0:1e-3:log", "random", "need lo < hi (lo > 0 for log)"),
        ("image_size=16,32", "random", "image_size cannot be searched: it defines the valid"),
        ("epochs=1,2", "hyperband", "epochs cannot be searched: hyperband sets each trial's"),
        ("k=1,5 k=2", "random", "'k=2' is repeated"),
        ("", "random", "--search is empty"),
    ],
)
def test_a_bad_search_space_is_refused_in_one_line(base, space, tuner, message):
    with pytest.raises(ValueError, match="--search") as error:
        tuning.parse_search(space, base, tuner)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_random_search_lists_every_trial_and_its_best_flags_train(random_search, tmp_path):
    tune_dir, rows = random_search
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert all(r["status"] == "completed" and r["start_steps"] == [0] for r in rows)
    with open(os.path.join(tune_dir, "results.csv")) as f:
        table = list(csv.DictReader(f))
    assert [float(r["objective"]) for r in table] == [r["objective"] for r in rows]
    for r in rows:  # bits/dim of the IWAE-5 bound, discrete likelihood: -bound / (D ln 2)
        assert r["objective"] == pytest.approx(-r["bound_nats"] / (16 * 16 * 3 * math.log(2)))
        config = config_lib.load(os.path.join(tune_dir, "trials", r["trial_id"], "config.json"))
        assert config == tuning.trial_config(config_lib.Config(**r["config"]), r["values"])
    with open(os.path.join(tune_dir, "results.md")) as f:
        markdown = f.read()
    best = min(rows, key=lambda r: r["objective"])
    assert f"**{best['objective']:.4f}**" in markdown and markdown.count("| completed |") == 3
    assert os.path.getsize(os.path.join(tune_dir, "results.png")) > 10_000
    # best.flags is accepted as is by the training program's flags.
    values = flags.FlagValues()
    config_lib.define_flags(values)
    flags.DEFINE_string("model_dir", None, "", flag_values=values)
    values(["train", f"--flagfile={os.path.join(tune_dir, 'best.flags')}"])
    config = config_lib.from_flags(values)
    assert config == config_lib.Config(**best["config"])
    assert values.model_dir == os.path.join(tune_dir, "best")
    assert train.train_and_evaluate(config, str(tmp_path), max_steps=1) == {}


def test_the_objective_does_not_depend_on_the_trials_training_k(random_search):
    tune_dir, rows = random_search
    config = config_lib.Config(**rows[0]["config"])
    model_dir = os.path.join(tune_dir, "trials", "0")
    scores = [tuning.score(config.replace(k=k), model_dir, 5, seed=config.seed) for k in (1, 2)]
    assert scores[0] == scores[1] and scores[0]["objective"] == rows[0]["objective"]
    # ... but on its own K: the ELBO (K=1) is below the IWAE-5 bound on the same images.
    elbo = tuning.score(config, model_dir, 1, seed=config.seed)
    assert elbo["bound_nats"] < scores[0]["bound_nats"]


def test_hyperband_continues_a_trial_from_its_parents_checkpoint(base, tmp_path):
    rows = tuning.search(
        base.replace(epochs=2), "latent_dim=3,4", str(tmp_path), "hyperband", max_trials=3,
        hyperband_factor=2,
    )  # fmt: skip
    first, second, child = rows
    assert (first["epochs"], second["epochs"], child["epochs"]) == (1, 1, 2)
    parent = min((first, second), key=lambda r: r["objective"])
    assert child["parent"] == parent["trial_id"] and child["values"] == parent["values"]
    assert parent["final_step"] == 4 and child["start_steps"] == [4] and child["final_step"] == 8
    assert not [p for p in os.listdir(tmp_path / "trials") if p.startswith(".")]  # no temporary


def _signal_during(monkeypatch, trial_ids):
    """Sends SIGINT while trial `trial_id` trains (at its first progress report), once each."""
    current, pending = {}, set(trial_ids)
    train_and_evaluate, mean_scalars = train.train_and_evaluate, loop.mean_scalars

    def tracked(config, model_dir, max_steps=None):
        current["trial"] = os.path.basename(model_dir)
        return train_and_evaluate(config, model_dir, max_steps)

    def reporting(pending_outputs, step):
        if current.get("trial") in pending:
            pending.discard(current["trial"])
            os.kill(os.getpid(), signal.SIGINT)
        return mean_scalars(pending_outputs, step)

    monkeypatch.setattr(train, "train_and_evaluate", tracked)
    monkeypatch.setattr(loop, "mean_scalars", reporting)


def test_an_interrupted_search_resumes_to_the_same_table(
    base, random_search, tmp_path, monkeypatch
):
    tune_dir = str(tmp_path)
    for trial_id in ("0", "1"):  # the first trial (no oracle state yet), then a later one
        with monkeypatch.context() as patch:
            _signal_during(patch, [trial_id])
            with pytest.raises(train.Stopped, match=f"trial {trial_id}: SIGINT: checkpoint saved"):
                tuning.search(base, SPACE, tune_dir, "random", max_trials=2)
    rows = tuning.search(base, SPACE, tune_dir, "random", max_trials=2)
    assert _comparable(rows) == _comparable(random_search[1][:2])  # the same values and numbers
    # Resumed, not redone: SIGINT at the report after step 2 rides in step 3's all-reduce,
    # which the loop reads after step 4 (the stop protocol), so the trials stopped at step 4.
    assert [r["start_steps"] for r in rows] == [[0, 4], [0, 4]]
    with pytest.raises(ValueError, match=r"Differing: search latent_dim: 3,4 \(saved\) vs 3,4,5"):
        tuning.search(base, SPACE.replace("3,4", "3,4,5"), tune_dir, "random", max_trials=2)


def test_diverging_and_invalid_trials_are_recorded_as_failed(base, tmp_path):
    rows = tuning.search(
        base, "learning_rate=1e-3,1e30 batch_size=16,128", str(tmp_path), max_trials=4,
        max_consecutive_failures=4,
    )  # fmt: skip
    outcome = {(r["values"]["learning_rate"], r["values"]["batch_size"]): r for r in rows}
    assert len(outcome) == 4
    assert outcome[1e-3, 16]["status"] == "completed"
    assert outcome[1e30, 16]["status"] == "failed"
    assert "loss became non-finite" in outcome[1e30, 16]["message"]
    for learning_rate in (1e-3, 1e30):
        assert outcome[learning_rate, 128]["status"] == "failed"
        assert "fewer than one batch of 128" in outcome[learning_rate, 128]["message"]
    table = (tmp_path / "results.md").read_text()
    assert "failed: The loss became non-finite" in table


def _flags(config):
    return config_lib.to_flags(config)


def _die_with_parent():
    import ctypes

    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _namespace_of(keeper):
    """nsenter's prefix into `keeper`'s own network namespace once its loopback is up, or []."""
    import subprocess

    namespace = ["nsenter", f"--net=/proc/{keeper.pid}/ns/net"]
    for _ in range(100):
        try:
            private = os.readlink(f"/proc/{keeper.pid}/ns/net") != os.readlink("/proc/self/ns/net")
            up = subprocess.run([*namespace, "ip", "-o", "link", "show", "lo"], capture_output=True)
        except OSError:  # no nsenter or ip, or the keeper is gone
            return []
        if private and b",UP" in up.stdout:
            return namespace
        if keeper.poll() is not None:
            return []
        time.sleep(0.1)
    return []


class _Processes:
    """Tune processes on 127.0.0.1, in a private network namespace where `unshare -n` works;
    each dies with the test (PR_SET_PDEATHSIG) and is killed at the end."""

    def __init__(self):
        import socket
        import subprocess

        self.procs, self.prefix, self.port = [], [], 50051
        try:
            keeper = subprocess.Popen(
                ["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 600"],
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        except OSError:
            keeper = None
        if keeper is not None:
            self.procs.append(keeper)
            self.prefix = _namespace_of(keeper)
        if not self.prefix:  # plain loopback: a free port
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]

    def start(self, tuner_id, args, log_path):
        import subprocess
        import sys

        env = dict(
            os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
            KERASTUNER_ORACLE_PORT=str(self.port), PYTHONPATH=ROOT, TF_NUM_INTRAOP_THREADS="1",
            TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
        )  # fmt: skip
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [*self.prefix, sys.executable, os.path.join(ROOT, "tools", "tune.py"), *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def _wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _logs(directory):
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in directory.glob("*.log"))


@pytest.mark.multiprocess
def test_a_chief_and_two_workers_share_a_search_and_a_lost_worker_stops_it(base, tmp_path):
    tune_dir = tmp_path / "tune"
    args = [*_flags(base), f"--tune_dir={tune_dir}", "--search=latent_dim=2,3,4", "--max_trials=3"]
    processes = _Processes()
    try:
        chief = processes.start("chief", [*args, "--worker_timeout_s=5"], tmp_path / "chief.log")
        _wait_for(lambda: "serving" in (tmp_path / "chief.log").read_text(), 180, "the chief")
        workers = [
            processes.start(f"tuner{i}", [*args, "--worker_timeout_s=5"], tmp_path / f"w{i}.log")
            for i in (0, 1)
        ]

        def running():
            rows = tuning.results.collect(str(tune_dir))
            return {r["tuner_id"] for r in rows if r["status"] == "running"} == {"tuner0", "tuner1"}

        _wait_for(running, 180, "a trial running on each worker")
        workers[1].kill()  # SIGKILL: no checkpoint, no goodbye
        killed = time.monotonic()
        assert chief.wait(timeout=120) == stopping.EXIT_STOPPED, _logs(tmp_path)
        assert time.monotonic() - killed < 5 + 25  # the bound, plus a loaded machine's slack
        log = (tmp_path / "chief.log").read_text()
        assert "worker tuner1 (trial" in log and "silent for over 5 s" in log
        assert workers[0].wait(timeout=120) in (0, stopping.EXIT_STOPPED), _logs(tmp_path)
        # Rerun, started together (a longer bound lets the chief come up): the search finishes.
        chief = processes.start("chief", [*args, "--worker_timeout_s=300"], tmp_path / "c2.log")
        worker = processes.start("tuner0", [*args, "--worker_timeout_s=300"], tmp_path / "w2.log")
        assert chief.wait(timeout=300) == 0 and worker.wait(timeout=60) == 0, _logs(tmp_path)
    finally:
        processes.close()
    rows = tuning.results.collect(str(tune_dir))
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert sorted(r["values"]["latent_dim"] for r in rows) == [2, 3, 4]  # each trial once
    assert {r["tuner_id"] for r in rows} <= {"tuner0", "tuner1"}
    assert "| completed |" in (tune_dir / "results.md").read_text()


def test_keras_tuner_is_the_pinned_minor_version_and_another_is_refused_in_one_line():
    import configparser
    import pathlib

    from tfvae.tuning import distributed

    setup = configparser.ConfigParser()
    setup.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    requirements = setup["options"]["install_requires"].replace(" ", "").splitlines()
    assert distributed.KERAS_TUNER_REQUIREMENT.replace(" ", "") in requirements
    distributed.check_keras_tuner()  # the installed one
    with pytest.raises(ImportError, match=r"keras-tuner 1\.5\.0 is installed, .* 1\.4\.x"):
        distributed.check_keras_tuner("1.5.0")
