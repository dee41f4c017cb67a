import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import likelihoods

LEVELS = np.arange(256, dtype=np.float32) / 255.0


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("loc,scale", [(0.5, 0.05), (0.0, 0.01), (1.02, 0.2), (0.3, 1e-3)])
def test_discretized_logistic_sums_to_one_over_256_values(compiled, loc, scale):
    dist = likelihoods.DiscretizedLogistic(loc, scale)
    log_prob = tf.function(dist.log_prob) if compiled else dist.log_prob
    probs = np.exp(log_prob(LEVELS).numpy().astype(np.float64))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


def test_discretized_logistic_matches_the_logistic_cdf_by_hand():
    loc, scale = 0.4, 0.03
    cdf = lambda v: 1 / (1 + np.exp(-(v - loc) / scale))  # noqa: E731
    expected = [cdf(0.5 / 255), cdf(100.5 / 255) - cdf(99.5 / 255), 1 - cdf(254.5 / 255)]
    x = np.array([0, 100, 255], np.float32) / 255
    got = np.exp(likelihoods.DiscretizedLogistic(loc, scale).log_prob(x).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("scale", [1e-3, 0.01, 0.1, 2.0])
def test_discretized_logistic_closed_form_equals_tfp_quantized_distribution(scale):
    locs = np.linspace(-0.2, 1.2, 15)[:, None]  # [15, 1] against 256 levels
    closed_form = likelihoods.DiscretizedLogistic(locs, scale).log_prob(LEVELS).numpy()
    tfd = tfp.distributions
    logistic = tfd.Logistic(locs * 255.0, scale * 255.0)  # float64 reference from TFP pieces
    shifted = tfd.TransformedDistribution(logistic, tfp.bijectors.Shift(np.float64(-0.5)))
    reference = tfd.QuantizedDistribution(shifted, low=0.0, high=255.0).log_prob(np.arange(256.0))
    reference = reference.numpy()
    finite = reference > -80  # far in the tails a float32 result may round differently
    np.testing.assert_allclose(closed_form[finite], reference[finite], rtol=2e-6, atol=2e-5)
    assert np.all(np.isfinite(closed_form)) and np.all(closed_form[~finite] < -70)


def test_discretized_logistic_gradients_are_finite_at_extreme_scales():
    loc, scale = tf.Variable([0.5, 0.5, 0.0]), tf.Variable([1e-3, 5.0, 1e-3])
    with tf.GradientTape() as tape:
        log_prob = likelihoods.DiscretizedLogistic(loc, scale).log_prob([1.0, 0.0, 1.0])
    gradients = tape.gradient(log_prob, [loc, scale])
    assert all(np.all(np.isfinite(g)) for g in gradients)


def test_discretized_logistic_median_and_samples_lie_on_the_pixel_grid():
    dist = likelihoods.DiscretizedLogistic(tf.fill([50], 0.7), 0.02)
    samples = dist.sample(3, seed=[1, 2]).numpy() * 255
    np.testing.assert_allclose(samples, np.round(samples), atol=1e-4)
    assert np.all((samples >= 0) & (samples <= 255))
    np.testing.assert_allclose(dist.median(), round(0.7 * 255) / 255)


def test_bernoulli_logits_zero_is_one_bit_per_dim_on_binary_pixels():
    dist = likelihoods.make("bernoulli", tf.zeros([2, 4, 4, 3]))
    x = tf.cast(tf.random.stateless_uniform([2, 4, 4, 3], [0, 1]) > 0.5, tf.float32)
    np.testing.assert_allclose(-dist.log_prob(x) / (48 * math.log(2)), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "discretized_logistic"])
@pytest.mark.parametrize("params_dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_likelihoods_have_image_events_and_float32_log_probs(name, params_dtype):
    channels = likelihoods.parameter_channels(name)
    dist = likelihoods.make(name, tf.zeros([5, 8, 8, channels], params_dtype))
    assert dist.batch_shape == [5] and dist.event_shape == [8, 8, 3]
    log_prob = dist.log_prob(tf.fill([5, 8, 8, 3], 0.5))
    assert log_prob.shape == [5] and log_prob.dtype == tf.float32
    image = likelihoods.point_estimate(dist)
    assert image.shape == [5, 8, 8, 3] and np.all((image >= 0) & (image <= 1))


def test_fixed_scale_gaussian_needs_one_channel_per_colour():
    assert likelihoods.parameter_channels("gaussian", gaussian_scale=0.1) == 3
    dist = likelihoods.make("gaussian", tf.zeros([1, 2, 2, 3]), gaussian_scale=0.1)
    assert isinstance(dist.distribution, tfp.distributions.Normal)
    np.testing.assert_allclose(dist.distribution.scale, 0.1)


def test_unknown_likelihood_is_one_clear_error():
    with pytest.raises(ValueError, match="'poisson' is unknown; accepted"):
        likelihoods.parameter_channels("poisson")
