import numpy as np
import pytest
import tensorflow as tf

from tests import linear_gaussian
from tfvae.models import objectives


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("k", [1, 7])
def test_iwae_bound_is_exact_with_the_true_posterior(compiled, k):
    vae, x, exact_log_px = linear_gaussian.make()
    bound = lambda x: objectives.iwae_bound(vae.log_weights(x, k, seed=[3, 4]))  # noqa: E731
    if compiled:
        bound = tf.function(bound)
    # Zero-variance weights: every log-weight equals log p(x).
    np.testing.assert_allclose(bound(tf.constant(x)), exact_log_px(x), rtol=2e-6, atol=2e-5)


def test_iwae_bound_increases_with_k_towards_log_px():
    vae, x, exact_log_px = linear_gaussian.make(mean_shift=0.7, std_scale=1.6)
    means = []
    for k in (1, 10, 100):
        bound = tf.function(
            lambda seed, k=k: objectives.iwae_bound(vae.log_weights(x, k, seed=seed))
        )
        bounds = [bound(tf.constant([k, r])) for r in range(200)]
        means.append(np.mean(bounds, axis=0))  # [B], an average of 200 draws
    exact = exact_log_px(x)
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2])
    assert np.all(means[2] <= exact + 1e-3)
    assert np.all(exact - means[2] < 0.5 * (exact - means[0]))


def test_log_weights_shape_and_dtype():
    vae, x, _ = linear_gaussian.make()
    log_w = vae.log_weights(x, 5, seed=[0, 0])
    assert log_w.shape == (5, len(x)) and log_w.dtype == tf.float32


def test_rows_of_given_noise_reproduce_the_global_batch():
    vae, x, _ = linear_gaussian.make(mean_shift=0.3, std_scale=1.3)
    noise = tf.random.stateless_normal([4, len(x), 2], [5, 6])
    full = vae.log_weights(x, 4, noise=noise)
    halves = [vae.log_weights(x[i : i + 3], 4, noise=noise[:, i : i + 3]) for i in (0, 3)]
    np.testing.assert_allclose(tf.concat(halves, axis=1), full, rtol=1e-6)
