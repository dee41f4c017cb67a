import math

import numpy as np
import pytest
import tensorflow as tf

from tfvae.models import objectives


@pytest.mark.parametrize("compiled", [False, True])
def test_iwae_bound_k1_is_elbo_and_matches_logmeanexp(compiled):
    log_w = tf.constant(np.random.default_rng(0).normal(-500.0, 30.0, size=(7, 4)), tf.float32)
    bound = tf.function(objectives.iwae_bound) if compiled else objectives.iwae_bound
    np.testing.assert_allclose(bound(log_w[:1]), log_w[0], rtol=1e-7)
    np.testing.assert_allclose(objectives.elbo(log_w[:1]), log_w[0], rtol=1e-7)
    w = log_w.numpy().astype(np.float64)
    reference = np.log(np.mean(np.exp(w - w.max(0)), 0)) + w.max(0)  # stable in float64
    np.testing.assert_allclose(bound(log_w), reference, rtol=1e-6)
    assert bound(log_w).dtype == tf.float32


def test_iwae_bound_is_stable_for_huge_log_weights():
    log_w = tf.constant([[-1e5, 1e4], [-1e5 + math.log(3), 1e4]], tf.float32)
    np.testing.assert_allclose(objectives.iwae_bound(log_w), [-1e5 + math.log(2.0), 1e4], rtol=1e-7)
