import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests import linear_gaussian
from tfvae.evaluation import bounds, noise, split, units
from tfvae.models import vae as model_lib

tfd = tfp.distributions


@pytest.mark.parametrize("learned_prior", [False, True], ids=["normal", "learned_gaussian"])
@pytest.mark.parametrize("num_samples", [1, 50])
def test_exact_log_px_with_the_true_posterior_for_any_k(num_samples, learned_prior):
    vae, x, exact_log_px = linear_gaussian.make(learned_prior=learned_prior)
    estimate = bounds.log_likelihood(vae, x, num_samples, chunk_size=16, seed=[1, 2])
    assert estimate.dtype == tf.float32
    np.testing.assert_allclose(estimate, exact_log_px(x), rtol=2e-6, atol=2e-5)


@pytest.mark.parametrize("iaf", [False, True], ids=["gaussian", "iaf"])
def test_a_poor_posterior_converges_to_log_px_within_standard_errors(iaf):
    vae, x, exact_log_px = linear_gaussian.make(mean_shift=0.8, std_scale=1.5, iaf=iaf)
    exact = exact_log_px(x)
    small = bounds.bounds(vae, x, 10, chunk_size=10, seed=[3, 3])
    gaps = []
    for repeat in range(5):
        estimate = bounds.log_likelihood(vae, x, 2000, chunk_size=500, seed=[repeat, 9])
        gaps.append(exact - estimate.numpy())
    gaps = np.array(gaps)  # [5, B]
    standard_error = gaps.std(0, ddof=1) / math.sqrt(len(gaps)) + 1e-3
    assert np.all(np.abs(gaps.mean(0)) < 4 * standard_error + 0.01)
    assert np.all(exact - small["elbo"].numpy() > np.abs(gaps.mean(0)))  # far tighter than ELBO


@pytest.mark.parametrize("iaf", [False, True], ids=["gaussian", "iaf"])
def test_chunking_batching_and_k1_agree(iaf):
    vae, x, _ = linear_gaussian.make(mean_shift=0.5, std_scale=1.3, iaf=iaf)
    ids = np.arange(len(x)) + 100
    whole = bounds.bounds(vae, x, 64, chunk_size=64, seed=[4, 5], example_ids=ids, group_size=4)
    chunked = bounds.bounds(
        vae, x, 64, chunk_size=12, seed=[4, 5], example_ids=ids, group_size=4
    )  # 12 samples a chunk, the last one short
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-6)
    halves = [
        bounds.log_likelihood(vae, x[i : i + 3], 64, 64, [4, 5], ids[i : i + 3]) for i in (0, 3)
    ]
    np.testing.assert_allclose(tf.concat(halves, 0), whole["log_likelihood"], rtol=1e-6)
    single = bounds.log_likelihood(vae, x[4:5], 64, 10, [4, 5], ids[4:5])
    np.testing.assert_allclose(single, whole["log_likelihood"][4:5], rtol=1e-6)
    k1 = bounds.bounds(vae, x, 1, 1, seed=[4, 5], example_ids=ids)
    np.testing.assert_allclose(k1["log_likelihood"], k1["elbo"], rtol=1e-6)
    # The ELBO of 64 samples is their mean log-weight: bounds are ordered as theory says.
    assert np.all(whole["elbo"] < whole["iwae_bound"]) and np.all(
        whole["iwae_bound"] < whole["log_likelihood"]
    )


def test_k1_estimates_average_to_the_elbo_expectation():
    vae, x, _ = linear_gaussian.make(mean_shift=0.5, std_scale=1.3)
    many = bounds.bounds(vae, x, 4000, chunk_size=1000, seed=[0, 1])["elbo"].numpy()
    draws = np.stack([bounds.log_likelihood(vae, x, 1, 1, [s, 2]) for s in range(400)])
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
    assert units.bits_per_dim(nll, dims, convention, pixels) == pytest.approx(expected)


def test_report_figure_is_reproduced_and_bernoulli_is_refused():
    assert round(float(units.bits_per_dim(7133, 12288, "report", 4096)), 2) == 2.51
    with pytest.raises(ValueError, match="Bernoulli"):
        units.convention_for("bernoulli")


def test_active_units_count_dimensions_whose_posterior_mean_varies(tiny_config):
    from tfvae import data
    from tfvae.models import vae as model

    vae = model.build(tiny_config)
    dense = vae.encoder.to_params
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
    kernel[:, 1:4] = 0.0  # dims 1..3 get a constant mean
    kernel[:, 0] *= 100.0  # dim 0 varies a lot
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    images = data.load("builtin", "validation", tiny_config.data_dir, 16, num_images=50)
    count, activity = split.active_units(vae, images)
    assert activity.shape == (4,) and np.all(activity[1:4] < 1e-10)
    assert count == 1 and activity[0] > 1e-2


# Dequantized densities: every bits/dim a bound.


class FixedGaussianDecoder(keras.layers.Layer):
    """p(x|z) = N(loc, scale^2) per dimension whatever z: batch [N], event loc's shape."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc, self.scale = tf.constant(loc, tf.float32), scale

    def call(self, z, training=False):
        loc = tf.broadcast_to(self.loc, tf.concat([tf.shape(z)[:1], tf.shape(self.loc)], 0))
        return tfd.Independent(tfd.Normal(loc, self.scale), reinterpreted_batch_ndims=3)


class PriorEncoder(keras.layers.Layer):
    """q(z|x) = p(z) = N(0, I): log p(z) - log q(z|x) = 0, so log w = log p(x|z)."""

    latent_dim = 2

    def call(self, x, training=False):
        return tfd.MultivariateNormalDiag(tf.zeros([tf.shape(x)[0], self.latent_dim]))


def _fixed_gaussian_vae(loc, scale):
    return model_lib.VAE(PriorEncoder(), FixedGaussianDecoder(loc, scale))


def test_a_sharp_gaussian_on_the_pixel_values_gets_nonnegative_bits_only_dequantized():
    pixels = np.random.default_rng(0).integers(0, 256, size=(4, 4, 3))
    x = np.broadcast_to(pixels / 255.0, (3, 4, 4, 3)).astype(np.float32)  # 3 copies
    vae = _fixed_gaussian_vae(pixels / 255.0, 1e-4)  # centred exactly on the pixel values
    bits = {
        dequantize: units.bits_per_dim(
            -bounds.log_likelihood(vae, x, 100, 50, [1, 1], dequantize=dequantize), 48, "density"
        )
        for dequantize in (False, True)
    }
    # log N(v/255; v/255, 1e-4) = 8.29 nats > ln 256: "8 - 3.96 bits" at the pixel values.
    expected = 8 - math.log2(1 / (1e-4 * math.sqrt(2 * math.pi)))  # -3.96
    np.testing.assert_allclose(bits[False], expected, rtol=1e-5)
    assert np.all(bits[True] >= 0)


@pytest.mark.parametrize("compiled", [False, True])
def test_dequantized_estimate_converges_to_the_exact_bin_probability(compiled):
    from scipy import stats

    rng = np.random.default_rng(1)
    loc, scale = rng.uniform(0.1, 0.9, size=(2, 2, 1)), 0.01  # 2.56 levels: p varies in a bin
    pixels = np.round(loc * 255 + rng.normal(0, 3, size=(3, 2, 2, 1)))  # B=3 images, D=4
    vae = _fixed_gaussian_vae(loc, scale)
    cdf = lambda t: stats.norm.cdf(t, loc, scale)  # noqa: E731
    exact = np.log(256 * (cdf((pixels + 1) / 256) - cdf(pixels / 256))).sum((1, 2, 3))
    x = (pixels / 255).astype(np.float32)
    estimate = tf.function(bounds.bounds) if compiled else bounds.bounds
    result = estimate(vae, x, 4000, 1000, [2, 3], None, 1, dequantize=True)
    # Each example's 4000 weights w_k = p(x_k) (here q = p(z)): their log-mean's error is
    # about std(w) / (mean(w) sqrt(K)), under 3% for these bins.
    np.testing.assert_allclose(result["log_likelihood"], exact, atol=0.05)
    assert np.all(result["elbo"] < result["log_likelihood"])  # Jensen, per (u, z) pair


def test_dequantization_noise_depends_on_example_and_sample_only():
    vae = _fixed_gaussian_vae(np.full((2, 2, 1), 0.5), 0.01)
    x = (np.arange(5 * 4).reshape(5, 2, 2, 1) / 255).astype(np.float32)
    ids = np.arange(5) + 20
    whole = bounds.bounds(vae, x, 40, 40, [4, 5], ids, group_size=4, dequantize=True)
    chunked = bounds.bounds(vae, x, 40, 7, [4, 5], ids, group_size=4, dequantize=True)
    alone = bounds.bounds(vae, x[2:3], 40, 9, [4, 5], ids[2:3], group_size=4, dequantize=True)
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-6)
        np.testing.assert_allclose(alone[name], whole[name][2:3], rtol=1e-6)
    u = noise.per_sample_uniform([4, 5], np.arange(100), 0, 1000, [2, 2, 1]).numpy()
    assert u.shape == (1000, 100, 2, 2, 1) and u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=10, range=(0, 1))[0]  # uniform: 40,000 +- 190 per bin
    assert np.all(np.abs(counts - u.size / 10) < 5 * np.sqrt(u.size / 10))
    flat = u.reshape(1000, 100 * 4)
    assert abs(np.corrcoef(flat[:-1].ravel(), flat[1:].ravel())[0, 1]) < 0.01  # across samples


def test_train_and_eval_steps_score_density_likelihoods_dequantized(tiny_config, monkeypatch):
    from tfvae import data
    from tfvae.training import steps

    pixels = np.random.default_rng(2).integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    images = tf.constant(np.broadcast_to(pixels, (16, 16, 16, 3)))  # 16 copies
    build = model_lib.build

    def sharp_decoder_model(config, *args, **kwargs):  # the run's encoder, a fixed decoder
        decoder = FixedGaussianDecoder(data.to_unit_interval(pixels), 1e-4)
        return model_lib.VAE(build(config, *args, **kwargs).encoder, decoder)

    monkeypatch.setattr(steps.model, "build", sharp_decoder_model)
    config = tiny_config.replace(likelihood="gaussian", gaussian_scale=1e-4, k=2)
    run = steps.Steps(config, tf.distribute.get_strategy())
    train = run.train_step(images, tf.constant([0, 1], tf.int64))
    batch = {"image": images, "index": tf.range(16, dtype=tf.int64), "weight": tf.ones([16])}
    sums = run.eval_step(batch, tf.constant([0, -1], tf.int64))
    # Scored at v / 255 the reconstruction would be 8.29 nats per dimension, above ln 256.
    for reconstruction in (train["reconstruction"], sums["reconstruction"] / sums["count"]):
        assert reconstruction < 16 * 16 * 3 * math.log(256)


def test_one_rule_says_which_likelihoods_have_bits_per_dim():
    assert units.convention_or_none("bernoulli") is None
    assert units.convention_or_none("gaussian") == units.convention_for("gaussian") == "density"
    assert units.convention_or_none("discretized_logistic_mixture") == "discrete"
    assert "Bernoulli" in units.describe_convention("bernoulli")
    assert units.describe_convention("gaussian") == units.BITS_PER_DIM_CONVENTIONS["density"]


@pytest.mark.parametrize("function", ["bounds", "log_likelihood"])
def test_num_samples_is_a_deprecated_alias_of_k(function):
    vae, x, _ = linear_gaussian.make()
    estimate = getattr(bounds, function)
    new = estimate(vae, x, k=12, chunk_size=5, seed=[1, 2])
    with pytest.warns(DeprecationWarning, match="`num_samples=` is deprecated"):
        old = estimate(vae, x, num_samples=12, chunk_size=5, seed=[1, 2])
    for a, b in zip(tf.nest.flatten(new), tf.nest.flatten(old), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="Give `k` only"):
        estimate(vae, x, k=3, num_samples=12)


def test_a_chunk_is_clipped_to_k_and_refused_beyond_memory_in_one_line():
    gib = 2**30
    # 16x16x3 logistic (P = 2): 3 * 2 + 16 = 22 float32 per dimension and decoded sample.
    assert bounds.chunk_bytes(1000, 5, 768) == 4 * 5 * 1000 * 768 * 22
    assert bounds.chunk_bytes(10, 1, 768, 10 / 3, k=100, latent_dim=7) == 4 * (
        10 * 768 * 26 + 100 * 7
    )
    assert bounds.check_chunk(10**6, 50, 5, 768, available=gib) == 50  # clipped to K, not refused
    assert bounds.check_chunk(200, 10**6, 5, 768, available=gib) == 200
    with pytest.raises(ValueError) as error:
        bounds.check_chunk(10**6, 10**6, 5, 768, available=20 * gib)
    message = str(error.value)
    assert "\n" not in message and message.startswith("Flag `--chunk_size` is 1000000:")
    assert "need about 314.7 GiB, 20.0 GiB is available; accepted: at most 63550" in message
    assert bounds.check_chunk(63550, 10**6, 5, 768, available=20 * gib) == 63550
    with pytest.raises(ValueError, match="--chunk_size"):
        bounds.check_chunk(63551, 10**6, 5, 768, available=20 * gib)
    assert bounds.available_bytes() > 0


def test_bounds_refuse_a_chunk_beyond_memory_before_any_work():
    vae, x, _ = linear_gaussian.make()
    with pytest.raises(ValueError, match="Flag `--chunk_size` is 100000000000"):
        bounds.bounds(vae, x, 10**11, chunk_size=10**11)
