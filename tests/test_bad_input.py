"""Every command refuses every bad flag value in one line, exit code 1, nothing written; every
command that reads a run works on a 40-image folder, capping its image counts with one line."""

import configparser
import importlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image

from tests.factory import tiny_config_for
from tfvae.cli import common
from tfvae.data import celeba
from tfvae.training import train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    return sorted(line.split(" = ")[1].split(":")[0].rsplit(".", 1)[1] for line in lines)


def _bad_values(flag) -> list[str]:
    """Values the flag's own type refuses: not a number, under its bound, not a choice."""
    parser = flag.parser
    if getattr(parser, "enum_values", None):
        return ["nope"]
    kind = parser.flag_type()
    values = {"int": ["x", "1.5"], "float": ["x"], "bool": ["maybe"]}.get(kind, [])
    low = getattr(parser, "lower_bound", None)
    if low is not None:
        values.append(str(low - 1))
    return values


CASES = [
    (command, name, value)
    for command in _commands()
    for definitions in [importlib.import_module(f"tfvae.cli.{command}").FLAG_DEFINITIONS]
    for name in definitions
    for value in _bad_values(definitions[name])
]


def test_the_cases_cover_every_command_and_kind_of_flag():
    assert set(_commands()) == {c for c, _, _ in CASES}
    assert {v for _, _, v in CASES} >= {"x", "1.5", "maybe", "nope", "0"}


@pytest.mark.parametrize("command,name,value", CASES)
def test_a_bad_value_is_one_line_naming_flag_value_and_what_is_accepted(
    command, name, value, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"tfvae.cli.{command}").main
    code = main([f"tfvae-{command}", f"--{name}={value}"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert captured.err.strip().splitlines() == [
        f"error: Flag `--{name}` is {value!r}; accepted: "
        + captured.err.split("accepted: ")[1].strip()
    ]
    assert os.listdir(tmp_path) == []  # nothing written


LIST_FLAGS = [
    (command, name)
    for command in _commands()
    for definitions in [importlib.import_module(f"tfvae.cli.{command}").FLAG_DEFINITIONS]
    for name in definitions
    if isinstance(definitions[name].parser, flags.BaseListParser)
]


REQUIRED_LISTS = [
    (command, name)
    for command, name in LIST_FLAGS
    if importlib.import_module(f"tfvae.cli.{command}").FLAG_DEFINITIONS[name].default is None
]


def test_the_list_flags_of_every_command_are_checked():
    assert set(REQUIRED_LISTS) == {
        ("compare_upsampling", "model_dirs"),
        ("loss_curves", "model_dirs"),
    }
    assert {
        ("benchmark", "ks"), ("compare_upsampling", "model_dirs"), ("interpolate", "indices"),
        ("loss_curves", "model_dirs"), ("reproduce", "quality_temperature"),
        ("sample_quality", "samplers"), ("traverse", "dims"),
    } <= set(LIST_FLAGS)  # fmt: skip


@pytest.mark.parametrize("command,name", LIST_FLAGS)
def test_an_empty_list_flag_is_one_line_unless_empty_is_its_default(
    command, name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"tfvae.cli.{command}")
    definitions = module.FLAG_DEFINITIONS
    argv = [f"tfvae-{command}", f"--{name}="]
    if "model_dir" in definitions:  # a required flag of its own, so the list is what is refused
        argv.append(f"--model_dir={tmp_path / 'no_run'}")
    if definitions[name].default == []:  # empty is the default: the same as leaving it out
        assert common.parse(argv, definitions)[name].value == []
        return
    code = module.main(argv)
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: Flag `--{name}` is empty; accepted: one or more comma-separated values"
    )
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.parametrize("command,name", REQUIRED_LISTS)
def test_a_missing_required_list_flag_is_one_line(command, name, capsys):
    code = importlib.import_module(f"tfvae.cli.{command}").main([f"tfvae-{command}"])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.strip().splitlines() == [
        f"error: Flag `--{name}` is required."
    ]


def _folder(path: pathlib.Path, count: int) -> pathlib.Path:
    """`count` distinct 32x32 JPEGs and a CelebA partition beside them: 3/4 train, 1/8 each
    validation and test."""
    path.mkdir()
    rng = np.random.default_rng(0)
    partition = []
    for i in range(count):
        pixels = rng.integers(0, 256, [4, 4, 3]).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        Image.fromarray(pixels).save(path / f"{i:06d}.jpg", quality=95)
        partition.append(f"{i:06d}.jpg {0 if i < count * 3 // 4 else 1 if i % 2 else 2}")
    (path.parent / celeba.PARTITION_FILE).write_text("\n".join(partition) + "\n")
    return path


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    source = _folder(root / "images", 40)
    config = tiny_config_for(
        root / "cache", dataset=f"folder:{source}", image_size=16, crop="none", batch_size=8,
        train_size=0, val_size=0,
    )  # fmt: skip
    train.train_and_evaluate(config, str(root / "run"))
    return root / "run"


@pytest.mark.parametrize(
    "command,args,flag",
    [
        ("bpp", ["--k=2", "--chunk_size=2"], "num_images"),
        ("latents", [], None),
        ("traverse", ["--num_dims=2", "--steps=3"], None),
        ("sample_quality", ["--fid=off", "--num_shown=8"], "num_images"),
        ("fit_sampler", ["--components=2", "--num_images=1000"], "num_images"),
    ],
)
def test_commands_run_on_a_40_image_folder_with_their_default_counts(
    folder_run, command, args, flag, capsys
):
    main = importlib.import_module(f"tfvae.cli.{command}").main
    code = main([f"tfvae-{command}", f"--model_dir={folder_run}", *args])
    captured = capsys.readouterr()
    if command == "latents":  # a folder without attributes has no labels: said in one line
        assert code == 1 and "has no labels" in captured.err.strip().splitlines()[-1]
        return
    assert code == 0, captured.err[-2000:]
    if flag:
        notes = [line for line in captured.out.splitlines() if line.startswith("note: --")]
        assert len(notes) == 1 and f"--{flag}=1000, but" in notes[0]


def test_bpp_refuses_a_chunk_beyond_memory_in_one_line_not_a_crash(folder_run):
    # Once a segmentation fault (exit 139, no message): the chunk's memory is checked first.
    command = "from tfvae.cli import bpp; bpp.run()"
    args = [f"--model_dir={folder_run}", "--k=1000000", "--chunk_size=1000000"]
    written = {p.name: p.stat().st_mtime_ns for p in folder_run.iterdir()}
    run = subprocess.run(
        [sys.executable, "-c", command, *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Flag `--chunk_size` is 1000000:")
    assert "GiB is available; accepted: at most" in errors[0]
    assert "--chunk_size" not in run.stderr.replace(errors[0], "") and "img/s" not in run.stderr
    assert {p.name: p.stat().st_mtime_ns for p in folder_run.iterdir()} == written  # untouched
