"""End to end: the tools on a tiny trained run."""

import json

import numpy as np
import pytest

from tests.factory import run_command, tiny_config_for
from tfvae.training import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    base = tmp_path_factory.mktemp("run")
    train.train_and_evaluate(tiny_config_for(data_dir), str(base))
    return base


_tool = run_command  # in process: the shims themselves are run in tests/test_layout.py


def test_bpp_writes_metrics_with_units_and_conventions(trained_run):
    (trained_run / "metrics.json").write_text(json.dumps({"nll_nats": 0.0, "other_tool": 7}))
    run = _tool(
        "bpp",
        f"--model_dir={trained_run}",
        "--k=20",
        "--num_images=6",
        "--eval_batch_size=4",
        "--chunk_size=8",
    )
    assert run.returncode == 0, run.stderr
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["other_tool"] == 7 and metrics["nll_nats"] > 0  # merged, own keys replaced
    assert metrics["k"] == 20 and metrics["num_images"] == 6
    assert metrics["trained_with"] == "IWAE-2 bound"  # no training controls
    assert metrics["bits_per_dim"] == pytest.approx(
        metrics["nll_nats"] / (16 * 16 * 3 * 0.6931471805599453)
    )
    assert "256 pixel values" in metrics["bits_per_dim_convention"]
    # Theory: ELBO <= IWAE-2 <= log p(x) estimate (averaged over examples; same samples).
    assert metrics["elbo_nats"] <= metrics["iwae_2_bound_nats"] <= -metrics["nll_nats"]
    assert metrics["nll_nats_standard_error"] > 0 and 0 <= metrics["active_units"] <= 3
    assert "report_bits_per_pixel" in metrics and "written to" in run.stdout
    # The codecs stored the very images evaluated: the first 6 of the validation split.
    from tfvae import config as config_lib
    from tfvae import data
    from tfvae.evaluation import codecs

    config = config_lib.load(str(trained_run / "config.json"))
    batch = next(iter(data.load_config_split(config, "validation", 6).batch(6)))
    for codec in codecs.CODECS:
        expected = codecs.bits_per_dim(batch["image"].numpy(), codec)
        assert metrics["codec_bits_per_dim"][codec] == expected
    assert "the model (" in run.stdout and "does not beat PNG" in run.stdout  # a tiny model


@pytest.mark.parametrize(
    "args,message",
    [
        (["--k=0"], "error: Flag `--k` is '0'; accepted: an integer >= 1."),
        (["--split=dev"], "error: Flag `--split` is 'dev'; accepted: train, validation, test."),
    ],
)
def test_bpp_bad_arguments_are_one_line(trained_run, args, message):
    run = _tool("bpp", f"--model_dir={trained_run}", *args)
    assert run.returncode != 0 and run.stderr.strip().splitlines()[-1].startswith(message)


def test_bpp_without_a_checkpoint_says_to_train_first(tmp_path):
    from tfvae import config as config_lib

    config_lib.save(config_lib.Config(), str(tmp_path / "config.json"))
    run = _tool("bpp", f"--model_dir={tmp_path}")
    assert run.returncode != 0 and "has no checkpoint yet; train it first" in run.stderr


@pytest.mark.parametrize(
    "tool,args,outputs",
    [
        ("traverse", ["--num_dims=2", "--steps=3"], ["traversal"]),
        ("traverse", ["--dims=0,2", "--image_index=1"], ["traversal"]),
        ("interpolate", ["--spherical"], ["interpolation"]),
        ("interpolate", ["--from_images"], ["interpolation"]),
    ],
)
def test_figure_tools_write_png_and_json(trained_run, tool, args, outputs):
    run = _tool(tool, f"--model_dir={trained_run}", *args)
    assert run.returncode == 0, run.stderr
    for name in outputs:
        assert (trained_run / "figures" / f"{name}.png").stat().st_size > 1000
        assert json.loads((trained_run / "figures" / f"{name}.json").read_text())
    if tool == "traverse":  # rows grouped by factor in the labels' order, inactive last
        from tfvae.data.builtin import LABEL_NAMES

        numbers = json.loads((trained_run / "figures" / "traversal.json").read_text())
        rank = [*LABEL_NAMES, "inactive"]
        shown = [rank.index(numbers["best_factor"][str(d)]) for d in numbers["dims"]]
        assert shown == sorted(shown) or "--dims=0,2" in args, numbers
        assert numbers["dims"] == [0, 2] or "--dims=0,2" not in args


def test_the_figure_tools_draw_their_codes_from_a_fitted_sampler(trained_run, tmp_path):
    from tfvae.models import vae as model
    from tfvae.samplers import store

    assert _tool("fit_sampler", f"--model_dir={trained_run}", "--sampler=gaussian").returncode == 0
    _, vae, checkpoint = model.restore(str(trained_run))
    sampler, _ = store.load(str(trained_run), "gaussian", checkpoint)
    run = _tool("interpolate", f"--model_dir={trained_run}", "--sampler=gaussian", "--seed=3",
                "--temperature=0.5")  # fmt: skip
    assert run.returncode == 0, run.stderr
    numbers = json.loads((trained_run / "figures" / "interpolation.json").read_text())
    expected = sampler.sample(2, [3, 0], 0.5).numpy()
    np.testing.assert_allclose([numbers["z0"], numbers["z1"]], expected, rtol=1e-5, atol=1e-6)
    run = _tool("traverse", f"--model_dir={trained_run}", "--sampler=gaussian", "--steps=3")
    assert run.returncode == 0, run.stderr
    numbers = json.loads((trained_run / "figures" / "traversal.json").read_text())
    np.testing.assert_allclose(numbers["centre"], sampler.means.numpy()[0], rtol=1e-5, atol=1e-6)
    assert numbers["start"] == "the gaussian's zero-noise code"
    run = _tool("compare_upsampling", f"--model_dirs={trained_run}", f"--output_dir={tmp_path}",
                "--num_images=4", "--num_shown=2", "--sampler=gaussian")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "upsampling_samples.json").read_text())["sampler"] == "gaussian"
    for tool in ("interpolate", "traverse"):  # a sampler never fitted: one line, exit 1
        run = _tool(tool, f"--model_dir={trained_run}", "--sampler=flow")
        assert run.returncode == 1 and "has no sampler 'flow' (fitted: gaussian)" in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_latents_tool_reports_factors_and_mig(trained_run):
    run = _tool("latents", f"--model_dir={trained_run}", "--num_images=16", "--bins=4")
    assert run.returncode == 0, run.stderr
    numbers = json.loads((trained_run / "figures" / "latents.json").read_text())
    assert len(numbers["factors"]) == 8 and 0 <= numbers["mutual_information_gap"] <= 1
    assert np.array(numbers["mutual_information_nats"]).shape == (3, 8)
    assert (trained_run / "figures" / "latents.png").stat().st_size > 1000


def test_comparison_tools_write_png_and_json(trained_run, tmp_path):
    from tfvae import config as config_lib
    from tfvae.evaluation import latents, upsampling

    config = config_lib.load(str(trained_run / "config.json"))
    nearest = tmp_path / "nearest"  # a second decoder, so the two measures can differ
    train.train_and_evaluate(config.replace(upsampling="nearest", kernel_size=3), str(nearest))
    run = _tool(
        "compare_upsampling",
        f"--model_dirs={trained_run},{nearest}",
        f"--output_dir={tmp_path}",
        "--num_images=8",
        "--num_shown=2",
    )
    assert run.returncode == 0, run.stderr
    numbers = json.loads((tmp_path / "upsampling_samples.json").read_text())
    real = upsampling.checkerboard_energy(latents.real_images(config))  # the same 256 images
    data_mean, data_sem = numbers["data_checkerboard_mean_and_standard_error"]
    assert data_mean == pytest.approx(real.mean()) and data_sem > 0
    runs = list(numbers["checkerboard_mean_and_standard_error"].values())
    assert len(runs) == 2 and runs[0] != runs[1]  # two decoders, one set of prior draws
    overlap = json.loads((tmp_path / "transposed_conv_overlap.json").read_text())
    taps = {
        k: np.array(t)
        for k, t in zip(overlap["kernel_sizes"], overlap["taps_per_output_pixel"], strict=True)
    }
    assert len(np.unique(taps[3][1:-1, 1:-1])) > 1  # kernel 3 at stride 2: uneven, a checkerboard
    assert np.unique(taps[4][1:-1, 1:-1]).tolist() == [4]  # kernel 4: every pixel gets 4 taps
    run = _tool("loss_curves", f"--model_dirs={trained_run}", f"--output_dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    for name in ("upsampling_samples", "transposed_conv_overlap", "loss_curves"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    curves = json.loads((tmp_path / "loss_curves.json").read_text())
    assert len(next(iter(curves.values()))["validation_loss"]) == 1  # one epoch
    run = _tool("loss_curves", f"--model_dirs={trained_run}", f"--output_dir={tmp_path}",
                "--against=minutes", "--bits_per_dim")  # fmt: skip
    assert run.returncode == 0, run.stderr
    curve = next(iter(json.loads((tmp_path / "loss_curves.json").read_text()).values()))
    size = json.loads((trained_run / "config.json").read_text())["image_size"]
    np.testing.assert_allclose(  # a discrete likelihood: -bound / (D ln 2)
        curve["validation_bits_per_dim"],
        np.array(curve["validation_loss"]) / (size * size * 3 * np.log(2)),
        rtol=1e-5,
    )
    minutes = np.array(curve["train_minutes"])
    assert np.all(np.diff(minutes) > 0) and 0 < curve["validation_minutes"][0] <= minutes[-1]


@pytest.mark.parametrize(
    "key, label",
    [
        ("validation", "validation"),
        ("reconstructions", "reconstructions"),
        ("samples_t1.0", "prior T=1.0"),
        ("samples_t0.7_batch_statistics", "prior T=0.7, batch statistics"),
        ("samples_flow_t1.0", "flow T=1.0"),
        ("samples_flow_t1.0_0.8_0.6_0.6", "flow T=1.0:0.8:0.6:0.6"),
        ("samples_t1.0_0.6", "prior T=1.0:0.6"),
        ("samples_aggregate_gaussian", "aggregate gaussian"),
    ],
)
def test_sample_quality_rows_name_the_sampler_and_its_temperatures(key, label):
    from tfvae.evaluation.sample_quality import row_label

    assert row_label(key) == label


def test_a_samples_key_reads_back_as_its_sampler_and_temperatures():
    from tfvae.evaluation.sample_quality import row_label, samples_key

    assert row_label(samples_key("prior", 0.7)) == "prior T=0.7"
    assert row_label(samples_key("flow", (1.2, 1.0, 1.4))) == "flow T=1.2:1.0:1.4"
