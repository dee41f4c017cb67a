import math

import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian
from tfvae import evaluate


@pytest.mark.parametrize("num_samples", [1, 50])
def test_exact_log_px_with_the_true_posterior_for_any_k(num_samples):
    vae, x, exact_log_px = linear_gaussian.make()
    estimate = evaluate.log_likelihood(vae, x, num_samples, chunk_size=16, seed=[1, 2])
    assert estimate.dtype == tf.float32
    np.testing.assert_allclose(estimate, exact_log_px(x), rtol=2e-6, atol=2e-5)


def test_a_poor_posterior_converges_to_log_px_within_standard_errors():
    vae, x, exact_log_px = linear_gaussian.make(mean_shift=0.8, std_scale=1.5)
    exact = exact_log_px(x)
    small = evaluate.bounds(vae, x, 10, chunk_size=10, seed=[3, 3])
    gaps = []
    for repeat in range(5):
        estimate = evaluate.log_likelihood(vae, x, 2000, chunk_size=500, seed=[repeat, 9])
        gaps.append(exact - estimate.numpy())
    gaps = np.array(gaps)  # [5, B]
    standard_error = gaps.std(0, ddof=1) / math.sqrt(len(gaps)) + 1e-3
    assert np.all(np.abs(gaps.mean(0)) < 4 * standard_error + 0.01)
    assert np.all(exact - small["elbo"].numpy() > np.abs(gaps.mean(0)))  # far tighter than ELBO


def test_chunking_batching_and_k1_agree():
    vae, x, _ = linear_gaussian.make(mean_shift=0.5, std_scale=1.3)
    ids = np.arange(len(x)) + 100
    whole = evaluate.bounds(vae, x, 64, chunk_size=64, seed=[4, 5], example_ids=ids, group_size=4)
    chunked = evaluate.bounds(
        vae, x, 64, chunk_size=12, seed=[4, 5], example_ids=ids, group_size=4
    )  # 12 samples a chunk, the last one short
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-6)
    halves = [
        evaluate.log_likelihood(vae, x[i : i + 3], 64, 64, [4, 5], ids[i : i + 3]) for i in (0, 3)
    ]
    np.testing.assert_allclose(tf.concat(halves, 0), whole["log_likelihood"], rtol=1e-6)
    single = evaluate.log_likelihood(vae, x[4:5], 64, 10, [4, 5], ids[4:5])
    np.testing.assert_allclose(single, whole["log_likelihood"][4:5], rtol=1e-6)
    k1 = evaluate.bounds(vae, x, 1, 1, seed=[4, 5], example_ids=ids)
    np.testing.assert_allclose(k1["log_likelihood"], k1["elbo"], rtol=1e-6)
    # The ELBO of 64 samples is their mean log-weight: bounds are ordered as theory says.
    assert np.all(whole["elbo"] < whole["iwae_bound"]) and np.all(
        whole["iwae_bound"] < whole["log_likelihood"]
    )


def test_k1_estimates_average_to_the_elbo_expectation():
    vae, x, _ = linear_gaussian.make(mean_shift=0.5, std_scale=1.3)
    many = evaluate.bounds(vae, x, 4000, chunk_size=1000, seed=[0, 1])["elbo"].numpy()
    draws = np.stack([evaluate.log_likelihood(vae, x, 1, 1, [s, 2]) for s in range(400)])
    error = draws.std(0) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - many) < 4 * error + 1e-3)


@pytest.mark.parametrize(
    "nll,dims,convention,pixels,expected",
    [
        (3072 * math.log(256), 3072, "discrete", None, 8.0),  # uniform over 256 levels
        (0.0, 3072, "density", None, 8.0),  # uniform density on [0,1]: 8 bits after dequant.
        (3072 * math.log(2), 3072, "discrete", None, 1.0),
        (7133.0, 64 * 64 * 3, "report", 64 * 64, 7133 * math.log2(math.e) / 4096),  # 2.51
    ],
)
def test_bits_per_dim_conventions(nll, dims, convention, pixels, expected):
    assert evaluate.bits_per_dim(nll, dims, convention, pixels) == pytest.approx(expected)


def test_report_figure_is_reproduced_and_bernoulli_is_refused():
    assert round(float(evaluate.bits_per_dim(7133, 12288, "report", 4096)), 2) == 2.51
    with pytest.raises(ValueError, match="Bernoulli"):
        evaluate.convention_for("bernoulli")


def test_active_units_count_dimensions_whose_posterior_mean_varies(tiny_config):
    from tfvae import data, model

    vae = model.build(tiny_config)
    dense = vae.encoder.to_params
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
    kernel[:, 1:4] = 0.0  # dims 1..3 get a constant mean
    kernel[:, 0] *= 100.0  # dim 0 varies a lot
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    images = data.load("builtin", "validation", tiny_config.data_dir, 16, size=50)
    count, activity = evaluate.active_units(vae, images)
    assert activity.shape == (4,) and np.all(activity[1:4] < 1e-10)
    assert count == 1 and activity[0] > 1e-2
