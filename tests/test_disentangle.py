"""The disentangling objectives: their estimators against analytic values, and the train step with
each of them (what it subtracts, two replicas against one, exact resume, refusals)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae.training import disentangle
from tfvae.training.steps import Steps

OBJECTIVES = ("beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")


def _gaussian_tc(covariance):
    """KL(N(0, S) || prod_d N(0, S_dd)) = (sum_d log S_dd - log det S) / 2, nats."""
    return 0.5 * (np.log(np.diag(covariance)).sum() - np.linalg.slogdet(covariance)[1])


def _codes(rng, means_covariance, scale, count):
    """Posterior means ~ N(0, A), scales `scale`, and one code of each: q(z) = N(0, A + s^2 I)."""
    loc = rng.multivariate_normal(np.zeros(len(means_covariance)), means_covariance, count)
    scales = np.full_like(loc, scale)
    z = loc + scales * rng.standard_normal(loc.shape)
    return [t.astype(np.float32) for t in (z, loc, scales)]


def test_the_stratified_weights_are_chen_et_als_and_each_row_sums_to_one():
    batch, size = 5, 100
    weights = np.exp(disentangle.log_stratified_weights(np.arange(batch), batch, size).numpy())
    others = batch - 1
    expected = np.full((batch, batch), 1 / others)
    for i in range(batch):
        expected[i, i] = 1 / size
        expected[i, (i + 1) % batch] = (size - others) / (size * others)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    # rows name each code's example: a replica's codes of examples 3, 4 get rows 3 and 4
    tail = np.exp(disentangle.log_stratified_weights([3, 4], batch, size).numpy())
    np.testing.assert_allclose(tail, expected[3:], rtol=1e-6)


@pytest.mark.parametrize("correlation", [0.8, 0.0])
def test_the_total_correlation_estimate_converges_to_the_gaussians_analytic_value(correlation):
    rng = np.random.default_rng(0)
    means = np.array([[1.0, correlation], [correlation, 1.0]])
    expected = _gaussian_tc(means + 0.25 * np.eye(2))  # 0.263 nats at 0.8, 0 at 0
    # Minibatches of 256 of an unbounded set (N = 1e6), averaged: Chen et al.'s estimator
    estimates = []
    for _ in range(30):
        z, loc, scale = _codes(rng, means, 0.5, 256)
        tc = disentangle.total_correlation(z, np.arange(256), loc, scale, 10**6)
        estimates.append(float(tf.reduce_mean(tc)))
    assert np.mean(estimates) == pytest.approx(expected, abs=0.02)  # s.e. 0.007
    # The whole set of 2,000 as one batch (N = 2,000)
    z, loc, scale = _codes(rng, means, 0.5, 2000)
    tc = disentangle.total_correlation(z, np.arange(2000), loc, scale, 2000)
    assert float(tf.reduce_mean(tc)) == pytest.approx(expected, abs=0.045)  # s.e. 0.014


def test_the_covariance_penalty_is_dip_vaes_formula():
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(50, 3)).astype(np.float32) @ np.array(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]], np.float32
    )
    scale = rng.uniform(0.1, 1.0, size=(50, 3)).astype(np.float32)
    means = np.cov(loc, rowvar=False, bias=True)
    for variant, covariance, diagonal_weight in (
        ("i", means, 10 * 2.0),
        ("ii", means + np.diag(np.mean(scale**2, 0)), 2.0),
    ):
        off = covariance - np.diag(np.diag(covariance))
        expected = 2.0 * np.sum(off**2) + diagonal_weight * np.sum((np.diag(covariance) - 1) ** 2)
        got = disentangle.covariance_penalty(loc, scale, variant, 2.0)
        assert float(got) == pytest.approx(expected, rel=1e-4), variant


def test_the_permutation_shuffles_each_dimension_across_the_batch_on_its_own():
    z = tf.reshape(tf.range(2 * 64 * 3, dtype=tf.float32), [2, 64, 3])
    permuted = disentangle.permute_dimensions(z, disentangle.permutation_indices([0, 1], z.shape))
    np.testing.assert_array_equal(np.sort(permuted, axis=1), z)  # each column is a permutation
    rows = permuted.numpy() // 3  # the example each value came from
    assert not np.array_equal(rows[..., 0], rows[..., 1])  # dimensions shuffled independently
    assert not np.array_equal(rows[0], rows[1])  # and each sample on its own


def test_the_discriminators_log_ratio_estimates_the_total_correlation_of_a_known_pair():
    # q = N(0, [[1, r], [r, 1]]) against prod_d q(z_d) = N(0, I): KL = -log(1 - r^2) / 2.
    keras.utils.set_random_seed(0)
    correlation = 0.8
    discriminator = disentangle.Discriminator(64)
    discriminator(tf.zeros([1, 2]))
    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.5, beta_2=0.9)
    mix = tf.linalg.cholesky(tf.constant([[1.0, correlation], [correlation, 1.0]]))

    @tf.function
    def step(seed):
        z = tf.random.stateless_normal([1, 512, 2], seed) @ tf.transpose(mix)
        permuted = disentangle.permute_dimensions(
            z, disentangle.permutation_indices(seed + 1, z.shape)
        )
        with tf.GradientTape() as tape:
            _, loss = disentangle.density_ratio_terms(discriminator, z[0], permuted[0])
            loss = tf.reduce_mean(loss)
        variables = discriminator.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    for i in range(1500):
        step(tf.constant([i, 7]))
    z = tf.random.stateless_normal([20000, 2], [1, 2]) @ tf.transpose(mix)
    tc, _ = disentangle.density_ratio_terms(discriminator, z, z)
    assert float(tf.reduce_mean(tc)) == pytest.approx(-0.5 * np.log(1 - correlation**2), abs=0.08)


def _batch(config, size=16):
    return next(iter(data.load_config_split(config, "train", size).batch(size)))["image"]


def _config(tiny_config, objective, **changes):
    return tiny_config.replace(
        objective=objective, batch_size=16, discriminator_units=16, tc_weight=3.0, dip_weight=2.0,
        **changes,
    )  # fmt: skip


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_is_the_bound_minus_its_weighted_penalty(tiny_config, objective):
    config = _config(tiny_config, objective, k=1)
    keras.utils.set_random_seed(0)
    steps = Steps(config, tf.distribute.get_strategy(), dataset_size=64)
    out = steps.train_step(_batch(config), tf.constant([0, 0], tf.int64))
    penalty = {
        "beta_tcvae": (config.tc_weight - 1) * out.get("total_correlation", np.nan),
        "factor_vae": config.tc_weight * out.get("total_correlation", np.nan),
    }.get(objective, out.get("covariance_penalty", np.nan))
    assert float(out["objective"]) == pytest.approx(float(out["bound"] - penalty), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(-float(out["objective"]))
    assert abs(float(penalty)) > 1e-3  # the penalty is there and counted
    if objective == "factor_vae":  # the discriminator learned from the same step
        assert float(out["discriminator_loss"]) == pytest.approx(np.log(2), abs=0.05)
        assert int(steps.discriminator_optimizer.iterations) == 1


def _two_steps(config, strategy, images):
    keras.utils.set_random_seed(0)
    steps = Steps(config, strategy, dataset_size=64)
    batch = images
    if strategy.num_replicas_in_sync > 1:
        dataset = tf.data.Dataset.from_tensors(images)
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    outs = [steps.train_step(batch, tf.constant([0, s], tf.int64)) for s in range(2)]
    weights = [v.numpy() for v in steps.model.trainable_variables]
    if steps.discriminator is not None:
        weights += [v.numpy() for v in steps.discriminator.trainable_variables]
    return outs, weights


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_replicas_train_as_one_under_each_objective(tiny_config, two_cpus, objective):
    config = _config(tiny_config, objective, k=2)
    images = _batch(config)
    one, one_weights = _two_steps(config, tf.distribute.get_strategy(), images)
    two, two_weights = _two_steps(config, two_cpus, images)
    for a, b in zip(one, two, strict=True):
        for name in ("loss", "total_correlation", "covariance_penalty", "discriminator_loss"):
            if name in a:
                assert float(b[name]) == pytest.approx(float(a[name]), rel=1e-4, abs=1e-4), name
    for a, b in zip(one_weights, two_weights, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


def test_a_resumed_factor_vae_run_equals_an_uninterrupted_one(tiny_config, tmp_path):
    from tfvae.training import train

    config = _config(tiny_config, "factor_vae")
    whole = train.train_and_evaluate(config, str(tmp_path / "whole"))
    resumed_dir = str(tmp_path / "resumed")
    assert train.train_and_evaluate(config, resumed_dir, max_steps=3) == {}  # mid-epoch
    assert train.train_and_evaluate(config, resumed_dir) == whole  # bit for bit


def test_mixed_precision_keeps_the_penalties_in_float32(tiny_config):
    config = _config(tiny_config, "factor_vae")
    steps = Steps(config, tf.distribute.get_strategy(), "mixed_bfloat16", dataset_size=64)
    out = steps.train_step(_batch(config), tf.constant([0, 0], tf.int64))
    assert all(np.isfinite(float(v)) for v in out.values())
    assert all(v.dtype == tf.float32 for v in steps.discriminator.trainable_variables)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(architecture="hierarchical", width=8, latent_groups="4:1,8:1"), "refused with "
         "--architecture=hierarchical; accepted: vae"),
        (dict(posterior="iaf"), "refused with --posterior=iaf; accepted: --posterior=diagonal"),
        (dict(batch_size=1), "`--batch_size` is 1 with --objective=beta_tcvae; it must be >= 2"),
        (dict(tc_weight=-1.0), "`--tc_weight` is -1.0; it must be >= 0"),
    ],
)  # fmt: skip
def test_what_the_objectives_refuse_is_named_in_one_line(tiny_config, changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        config_lib.Config(**{**tiny_config.to_dict(), "objective": "beta_tcvae", **changes})
    assert "\n" not in str(error.value)
