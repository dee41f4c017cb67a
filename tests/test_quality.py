"""Frechet distance against closed forms, the feature path, the factor classifier, the tool."""

import json
import shutil

import keras
import numpy as np
import pytest

from tests.factory import run_command
from tfvae import config as config_lib
from tfvae.evaluation import factor_classifier
from tfvae.evaluation import sample_quality as quality
from tfvae.models import vae as model
from tfvae.samplers import gaussian
from tfvae.training import train


def _rotation(angle):
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 9.25 + 5
    assert quality.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected)
    # The same in a rotated basis (commuting covariances, not diagonal).
    r = np.eye(3)
    r[:2, :2] = _rotation(0.6)
    got = quality.frechet_distance(r @ m1, r @ np.diag(a) @ r.T, r @ m2, r @ np.diag(b) @ r.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_non_commuting_covariances_is_the_closed_form():
    # For 2x2 M with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    c1 = _rotation(0.3) @ np.diag([3.0, 0.2]) @ _rotation(0.3).T
    c2 = _rotation(-1.1) @ np.diag([0.5, 2.0]) @ _rotation(-1.1).T
    assert not np.allclose(c1 @ c2, c2 @ c1)
    trace_root = np.sqrt(np.trace(c1 @ c2) + 2 * np.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
    expected = 1.0 + np.trace(c1) + np.trace(c2) - 2 * trace_root
    got = quality.frechet_distance([0.0, 0.0], c1, [1.0, 0.0], c2)
    assert got == pytest.approx(expected, rel=1e-10)
    assert quality.frechet_distance([1.0, 0.0], c2, [0.0, 0.0], c1) == pytest.approx(expected)


def test_frechet_distance_of_singular_and_equal_covariances():
    c = _rotation(0.4) @ np.diag([2.0, 0.5]) @ _rotation(0.4).T
    assert quality.frechet_distance([1.0, 2.0], c, [1.0, 2.0], c) == pytest.approx(0.0, abs=1e-12)
    # A point mass against N(m, C): ||m||^2 + tr C (the 2-Wasserstein distance squared).
    got = quality.frechet_distance([0.0, 0.0], np.zeros((2, 2)), [3.0, 4.0], c)
    assert got == pytest.approx(25.0 + 2.5)


def test_frechet_distance_of_samples_approaches_that_of_their_gaussians():
    rng = np.random.default_rng(0)
    c1 = np.array([[2.0, 0.6], [0.6, 1.0]])
    c2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    x1 = rng.multivariate_normal([0.0, 1.0], c1, size=200_000)
    x2 = rng.multivariate_normal([1.0, 0.0], c2, size=200_000)
    exact = quality.frechet_distance([0.0, 1.0], c1, [1.0, 0.0], c2)
    assert quality.frechet_distance_of_features(x1, x2) == pytest.approx(exact, rel=0.02)
    with pytest.raises(ValueError, match="Features must be"):
        quality.frechet_distance_of_features(x1[:1], x2)


def test_extract_features_resizes_scales_to_minus_one_one_and_batches():
    inputs = keras.Input((12, 12, 3))
    stand_in = keras.Model(inputs, keras.layers.Flatten()(inputs))  # the pixels it was given
    colours = np.random.default_rng(1).uniform(size=(7, 1, 1, 3)).astype(np.float32)
    images = np.broadcast_to(colours, (7, 20, 20, 3))  # constant images survive any resize
    features = quality.extract_features(stand_in, images, batch_size=3)
    assert features.dtype == np.float64 and features.shape == (7, 12 * 12 * 3)
    expected = np.tile(2.0 * colours[:, 0, 0] - 1.0, (1, 144))
    np.testing.assert_allclose(features, expected, atol=1e-5)
    np.testing.assert_array_equal(features, quality.extract_features(stand_in, images, 7))


def test_inception_is_offline_with_a_path_or_none(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="--inception_weights"):
        quality.inception_network(str(tmp_path / "missing.h5"))
    assert quality.inception_or_reason("off") == (None, "--fid=off")

    def no_network(weights):
        raise OSError("URL fetch failure")

    monkeypatch.setattr(quality, "inception_network", no_network)
    network, reason = quality.inception_or_reason("auto")
    assert network is None and "URL fetch failure" in reason
    with pytest.raises(ValueError, match="pass --inception_weights=PATH"):
        quality.inception_or_reason("on")


def test_factor_bins_split_unit_interval_equally():
    labels = np.array([[0.0, 0.19, 0.2, 0.99, 1.0]])
    np.testing.assert_array_equal(factor_classifier.factor_bins(labels, 5), [[0, 0, 1, 4, 4]])


def _weights(classifier):
    return [w.copy() for w in classifier.get_weights()]


def test_classifier_trains_deterministically_once_then_loads(tmp_path, monkeypatch):
    recipe = factor_classifier.classifier_recipe(16, train_size=64, epochs=1)
    data_dir, cache = str(tmp_path.parent / "tfvae-data"), str(tmp_path)  # shared data
    first, info = factor_classifier.load_or_train(data_dir, recipe, cache)
    assert info["trained_now"] and len(info["validation_factor_accuracy"]) == 8
    weights = _weights(first)

    def no_training(*args):
        raise AssertionError("a cached classifier was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(factor_classifier, "_train_classifier", no_training)
        loaded, loaded_info = factor_classifier.load_or_train(data_dir, recipe, cache)
    assert not loaded_info["trained_now"] and loaded_info["key"] == info["key"]
    for a, b in zip(weights, _weights(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    shutil.rmtree(info["directory"])  # trained again from scratch: the same weights
    again, _ = factor_classifier.load_or_train(data_dir, recipe, cache)
    for a, b in zip(weights, _weights(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other = factor_classifier.classifier_recipe(16, train_size=64, epochs=2)
    assert factor_classifier.recipe_key(other) != info["key"]
    images = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
    assert first.embed(images).shape == (3, 128) and first.predict_bins(images).shape == (3, 8)


def test_nearest_labels_and_factor_accuracy():
    rng = np.random.default_rng(2)
    reference = rng.uniform(size=(10, 4, 4, 3)).astype(np.float32)
    labels = rng.uniform(size=(10, 8)).astype(np.float32)
    offset = np.full((2, 4, 4, 3), 0.01, np.float32)
    found, rms = factor_classifier.nearest_labels(reference[[7, 2]] + offset, reference, labels)
    np.testing.assert_array_equal(found, labels[[7, 2]])
    np.testing.assert_allclose(rms, 0.01, rtol=1e-3)
    predicted = factor_classifier.factor_bins(labels, 5)
    predicted[:5, 0] = (predicted[:5, 0] + 1) % 5  # half of factor 0 wrong
    accuracy = factor_classifier.factor_accuracy(predicted, labels, 5)
    np.testing.assert_allclose(accuracy, [0.5] + [1.0] * 7)


def test_aggregate_posterior_kl_is_the_closed_form():
    # Every q(z|x) = N(0, s^2 I): the aggregate is N(0, s^2 I), KL = Z/2 (s^2 - 1 - ln s^2).
    means, scales = np.zeros((50, 3)), np.full((50, 3), 0.5)
    stats = gaussian.aggregate_posterior(means, scales)
    expected = 1.5 * (0.25 - 1 - np.log(0.25))
    assert stats["kl_moment_matched_nats"] == pytest.approx(expected)
    assert stats["kl_moment_matched_diagonal_nats"] == pytest.approx(expected)
    # Means +-1 in dimension 0 (variance 100/99 with ddof=1) and tiny scales.
    means = np.zeros((100, 2))
    means[:, 0] = np.repeat([1.0, -1.0], 50)
    stats = gaussian.aggregate_posterior(means, np.full((100, 2), 1e-3))
    np.testing.assert_allclose(stats["variance_of_means"], [100 / 99, 0.0], atol=1e-12)
    np.testing.assert_allclose(stats["mean_posterior_variance"], [1e-6, 1e-6])
    np.testing.assert_allclose(stats["covariance_eigenvalues"], [100 / 99 + 1e-6, 1e-6])
    # KL(N(m, S) || N(0, I)) = (tr S + m'm - Z - ln det S) / 2 with correlated means.
    rng = np.random.default_rng(4)
    means = rng.standard_normal((400, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]]) + [0.5, -0.2]
    stats = gaussian.aggregate_posterior(means, np.full((400, 2), 0.3))
    s = np.cov(means, rowvar=False) + 0.09 * np.eye(2)
    m = means.mean(0)
    expected = 0.5 * (np.trace(s) + m @ m - 2 - np.log(np.linalg.det(s)))
    assert stats["kl_moment_matched_nats"] == pytest.approx(expected)
    assert stats["kl_moment_matched_diagonal_nats"] < expected  # the correlation is ignored


def test_temperature_scales_prior_draws(tiny_config):
    vae = model.build(tiny_config)
    eps = vae.prior.sample(4, seed=[5, 6])
    np.testing.assert_array_equal(
        vae.sample(4, seed=[5, 6], temperature=0.5), vae.sample(z=0.5 * eps)
    )
    with pytest.raises(ValueError, match="`temperature` is 0"):
        vae.sample(4, temperature=0.0)
    with pytest.raises(ValueError, match="applies to prior draws"):
        vae.sample(z=eps, temperature=0.7)
    with pytest.raises(ValueError, match="`--temperature` is -1"):
        tiny_config.replace(temperature=-1.0)
    assert not config_lib.differences(tiny_config, tiny_config.replace(temperature=0.7))


def test_decoding_with_batch_statistics_leaves_the_model_unchanged(tiny_config):
    vae = model.build(tiny_config)
    for v in vae.decoder.non_trainable_variables:  # moving statistics unlike any batch's
        v.assign(v + 3.0)
    before = [v.numpy() for v in vae.decoder.non_trainable_variables]
    z = vae.prior.sample(8, seed=[0, 1])
    images = gaussian.decode_with_batch_statistics(vae, z, batch_size=8)
    for v, b in zip(vae.decoder.non_trainable_variables, before, strict=True):
        np.testing.assert_array_equal(v.numpy(), b)
    assert not np.allclose(images, vae.sample(z=z))  # inference mode differs from batch mode
    assert images.shape == (8, 16, 16, 3) and images.min() >= 0 and images.max() <= 1


def test_sample_quality_tool_merges_metrics_and_draws_grids(tmp_path, tiny_config):
    config = tiny_config.replace(epochs=1, train_size=32, val_size=16)
    train.train_and_evaluate(config, str(tmp_path))
    (tmp_path / "metrics.json").write_text(json.dumps({"nll_nats": 123.0}))
    args = ["--num_images=16", "--classifier_train_size=64", "--classifier_epochs=1"]
    run = run_command(
        "sample_quality", f"--model_dir={tmp_path}", "--fid=off", "--num_shown=8", *args
    )
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["nll_nats"] == 123.0 and metrics["sample_quality_num_images"] == 16
    # Real training faces sit closer to the validation faces than a one-epoch model's samples.
    assert metrics["factor_fd_train"] < metrics["factor_fd_samples_t1.0"]
    assert metrics["factor_fd_samples_t0.7"] > 0 and metrics["factor_fd_reconstructions"] > 0
    for name in ("validation", "reconstructions", "samples_t1.0"):
        assert 0 <= metrics[f"nearest_factor_accuracy_{name}"] <= 1
    assert 0 <= metrics["factor_accuracy_reconstructions"] <= 1
    assert metrics["nearest_train_rms_validation"] > 0  # validation images are not in train
    assert len(metrics["aggregate_posterior"]["variance_of_means"]) == 4
    for name in ("samples_t1.0", "samples_t0.7", "sample_quality"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp"))
    bad = run_command("sample_quality", f"--model_dir={tmp_path}", "--temperature=0")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: Flag `--temperature` has 0.0"
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # A fitted sampler beside the prior: its own sets, distances and grids.
    fitted = run_command("fit_sampler", f"--model_dir={tmp_path}", "--components=2")
    assert fitted.returncode == 0, fitted.stderr
    unfitted = run_command("sample_quality", f"--model_dir={tmp_path}", "--samplers=prior,flow")
    assert (
        unfitted.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: --model_dir={tmp_path} has no sampler 'flow' (fitted: gmm)")
    )
    run = run_command(
        "sample_quality", f"--model_dir={tmp_path}", "--fid=off", "--num_shown=8",
        "--samplers=gmm", "--temperature=1.0", *args,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["factor_fd_samples_gmm_t1.0"] > 0
    assert (tmp_path / "figures" / "samples_gmm_t1.0.png").stat().st_size > 1000
