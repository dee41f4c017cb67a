"""Training controls (KL weight and warm-up, free bits, EMA): what they change in the objective,
that evaluation ignores them, and exact resume with an EMA."""

import numpy as np
import pytest
import tensorflow as tf

from tests.factory import scalar_events
from tfvae import config as config_lib
from tfvae.models import objectives, posteriors, priors
from tfvae.models import vae as model
from tfvae.training import loop, train
from tfvae.training.steps import (
    Steps,
    kl_weight_at,
    learning_rate_at,
    learning_rate_schedule,
    training_objective,
)


def test_the_kl_weight_ramps_linearly_to_its_value():
    config = config_lib.Config(kl_weight=0.5, kl_warmup_steps=4)
    weights = [float(kl_weight_at(config, s)) for s in range(6)]
    assert weights == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    assert float(kl_weight_at(config_lib.Config(), 0)) == 1.0


def _terms_and_posterior(seed=0, k=3, batch=4, dims=5):
    rng = np.random.default_rng(seed)
    loc = tf.constant(rng.normal(size=[batch, dims]), tf.float32)
    scale = tf.constant(rng.uniform(0.05, 1.5, [batch, dims]), tf.float32)
    q = posteriors.GaussianPosterior(posteriors.tfd.MultivariateNormalDiag(loc, scale))
    noise = tf.constant(rng.normal(size=[k, batch, dims]), tf.float32)
    z, _ = q.draw(noise)
    terms = {
        "log_px_z": tf.constant(rng.normal(-100, 5, [k, batch]), tf.float32),
        "log_pz": priors.standard_normal(dims).log_prob(z),
        "log_qz_x": q.log_prob(z),
    }
    return terms, q, noise, z


def test_the_objective_is_the_bound_at_weight_one_and_a_beta_bound_otherwise():
    terms, q, noise, _ = _terms_and_posterior()
    config = config_lib.Config(k=3)
    bound = objectives.iwae_bound(objectives.log_weights_from_terms(terms))
    np.testing.assert_allclose(training_objective(config, terms, q, noise, 1.0), bound)
    beta = terms["log_px_z"] + 0.3 * (terms["log_pz"] - terms["log_qz_x"])
    np.testing.assert_allclose(
        training_objective(config.replace(kl_weight=0.3), terms, q, noise, 0.3),
        objectives.iwae_bound(beta),
        rtol=1e-6,
    )


def test_free_bits_floor_each_dimensions_kl_of_each_example():
    terms, q, noise, z = _terms_and_posterior()
    lam = 0.4
    config = config_lib.Config(k=3, free_bits=lam)
    # Per dimension by hand with TFP's univariate normals: log q_d(z_d|x) - log p_d(z_d).
    univariate = posteriors.tfd.Normal(q.distribution.mean(), q.distribution.stddev())
    per_dim = np.mean(univariate.log_prob(z) - posteriors.tfd.Normal(0.0, 1.0).log_prob(z), axis=0)
    np.testing.assert_allclose(  # the dimensions add up to the joint KL estimate
        per_dim.sum(-1), np.mean(terms["log_qz_x"] - terms["log_pz"], 0), rtol=1e-4, atol=1e-4
    )
    assert (per_dim < lam).any() and (per_dim > lam).any()  # the floor binds somewhere
    expected = objectives.iwae_bound(objectives.log_weights_from_terms(terms)) - np.maximum(
        0.0, lam - per_dim
    ).sum(-1)
    got = training_objective(config, terms, q, noise, 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_validation_and_evaluation_ignore_the_training_controls(tiny_config, tmp_path):
    controlled = tiny_config.replace(epochs=1, kl_weight=0.5, kl_warmup_steps=3, free_bits=0.2)
    metrics = train.train_and_evaluate(controlled, str(tmp_path))
    # The same weights under a config without controls: the same validation numbers.
    _, vae, checkpoint = model.restore(str(tmp_path))
    plain = controlled.replace(kl_weight=1.0, kl_warmup_steps=0, free_bits=0.0)
    steps = Steps(plain, tf.distribute.get_strategy())
    tf.train.Checkpoint(model=steps.model).restore(checkpoint).expect_partial()
    val = train.data.load_config_split(plain, "validation", plain.val_size)
    batches, count = loop.validation_batches(plain, steps.strategy, val.map(lambda e: e["image"]))

    class Quiet:
        def scalars(self, *args):
            pass

    again = loop.validate(plain, steps, batches, count, Quiet())
    assert again == metrics
    assert objectives.describe_training(controlled) == (
        "IWAE-3 bound with KL weight 0.5, warmed up over 3 steps; "
        "free bits 0.2 nats per latent dimension"
    )


def test_a_resumed_run_with_an_ema_equals_an_uninterrupted_one_and_hands_on_the_average(
    tiny_config, tmp_path
):
    # With a flow prior and an IAF posterior: their weights (and averages) resume too.
    config = tiny_config.replace(
        ema_decay=0.9, prior="flow", posterior="iaf", flow_layers=1, flow_width=8
    )
    whole = train.train_and_evaluate(config, str(tmp_path / "whole"))
    resumed_dir = str(tmp_path / "resumed")
    assert train.train_and_evaluate(config, resumed_dir, max_steps=3) == {}  # mid-epoch
    assert train.train_and_evaluate(config, resumed_dir) == whole  # bit for bit
    _, averaged, checkpoint = model.restore(resumed_dir)
    trained = model.build(config)
    tf.train.Checkpoint(model=trained).restore(checkpoint).expect_partial()
    difference = max(
        float(tf.reduce_max(tf.abs(a - b)))
        for a, b in zip(averaged.trainable_variables, trained.trainable_variables, strict=True)
    )
    assert difference > 1e-6  # restore hands on the average, not the last weights
    with pytest.raises(ValueError, match=r"ema_decay: 0.9 \(saved\) vs 0.0"):  # not a run control
        train.train_and_evaluate(config.replace(ema_decay=0.0), resumed_dir)


def test_the_average_ramps_its_decay_and_averages_the_batch_statistics(tiny_config):
    config = tiny_config.replace(ema_decay=0.999)
    tf.keras.utils.set_random_seed(0)
    steps = Steps(config, tf.distribute.get_strategy())
    ema = steps.ema
    assert [float(ema.decay_at(t)) for t in (0, 90, 10**6)] == pytest.approx([0.1, 0.91, 0.999])
    before = [v.numpy() for v in steps.model.variables]
    shape = [config.batch_size, 16, 16, 3]
    images = tf.constant(np.random.default_rng(0).integers(0, 256, shape), tf.uint8)
    steps.train_step(images, tf.constant([0, 0], tf.int64))  # step t = 0: d = 0.1
    moved = 0
    for shadow, start, live in zip(ema.model.variables, before, steps.model.variables,
                                   strict=True):  # fmt: skip
        np.testing.assert_allclose(shadow, 0.1 * start + 0.9 * live.numpy(), rtol=1e-5, atol=1e-6)
        moved += not np.allclose(start, live.numpy())
    assert moved > len(before) // 2  # weights and batch statistics both moved


def _one_step(config, images):
    tf.keras.utils.set_random_seed(0)
    steps = Steps(config, tf.distribute.get_strategy())
    before = [v.numpy() for v in steps.model.trainable_variables]
    # The gradient of the step's loss, computed here without the step's guards.
    noise = tf.random.stateless_normal([config.k, config.batch_size, config.latent_dim], [0, 0])
    with tf.GradientTape() as tape:
        terms, q = steps._terms(images, noise, None, training=True)
        objective = training_objective(config, terms, q, noise, 1.0)
        loss = -tf.reduce_sum(objective) / config.batch_size
    gradients = tape.gradient(loss, steps.model.trainable_variables)
    for v, value in zip(steps.model.trainable_variables, before, strict=True):
        v.assign(value)  # the tape's forward pass moved no weight, but be sure
    out = steps.train_step(images, tf.constant([0, 0], tf.int64))
    return steps, before, gradients, out


def test_clipping_scales_the_global_gradient_and_skipping_leaves_the_state(tiny_config):
    images = next(iter(train.data.load_config_split(tiny_config, "train", 64).batch(16)))["image"]
    plain = tiny_config.replace(batch_size=16)
    # Clipped to 1e-3 (far below the norm): Adam's first moment is (1 - beta_1) g 1e-3 / |g|.
    steps, _, gradients, out = _one_step(plain.replace(clip_gradient_norm=1e-3), images)
    norm = float(tf.linalg.global_norm(gradients))
    np.testing.assert_allclose(float(out["gradient_norm"]), norm, rtol=1e-4)  # before clipping
    for g, m in zip(gradients, steps.optimizer._momentums, strict=True):
        np.testing.assert_allclose(m.numpy(), (1 - plain.beta_1) * g.numpy() * 1e-3 / norm,
                                   rtol=1e-3, atol=1e-9)  # fmt: skip
    # Skipping: an update over the threshold leaves weights and optimizer state, and is counted.
    steps, before, _, out = _one_step(plain.replace(skip_gradient_norm=1e-3), images)
    assert float(out["skipped_updates"]) == 1 and int(steps.optimizer.iterations) == 0
    for v, value in zip(steps.model.trainable_variables, before, strict=True):
        np.testing.assert_array_equal(v.numpy(), value)
    assert all(float(tf.reduce_max(tf.abs(m))) == 0 for m in steps.optimizer._momentums)
    steps, before, _, out = _one_step(plain.replace(skip_gradient_norm=norm * 2), images)
    assert float(out["skipped_updates"]) == 0 and int(steps.optimizer.iterations) == 1
    assert any(
        not np.array_equal(v.numpy(), value)
        for v, value in zip(steps.model.trainable_variables, before, strict=True)
    )


def test_a_non_finite_gradient_is_skipped_and_training_goes_on(tiny_config, monkeypatch):
    from tfvae.training import steps as steps_lib

    real = steps_lib.training_objective

    def nan_at_the_first_step(config, terms, q, noise, kl_weight):  # kl_weight 0.25 at step 0
        objective = real(config, terms, q, noise, kl_weight)
        return objective * tf.where(kl_weight < 0.3, np.nan, 1.0)  # NaN loss and gradients

    monkeypatch.setattr(steps_lib, "training_objective", nan_at_the_first_step)
    config = tiny_config.replace(batch_size=16, kl_warmup_steps=4, skip_gradient_norm=1e9)
    steps = Steps(config, tf.distribute.get_strategy())
    images = next(iter(train.data.load_config_split(config, "train", 64).batch(16)))["image"]
    outs = [steps.train_step(images, tf.constant([0, s], tf.int64)) for s in range(3)]
    assert not np.isfinite(float(outs[0]["loss"])) and np.isfinite(float(outs[2]["loss"]))
    assert float(outs[2]["skipped_updates"]) == 1 and int(steps.optimizer.iterations) == 2
    assert all(np.isfinite(v.numpy()).all() for v in steps.model.weights)  # batch norm too
    scalars = loop.mean_scalars([{k: v.numpy() for k, v in o.items()} for o in outs], 3)
    assert np.isfinite(scalars["loss"])  # the skipped step does not stop the run


def test_the_guards_read_the_gradient_norm_without_the_loss_scale(tiny_config):
    # mixed_float16 scales the loss (2^15 at first): clipping and skipping see the true norm.
    images = next(iter(train.data.load_config_split(tiny_config, "train", 64).batch(16)))["image"]
    config = tiny_config.replace(batch_size=16, clip_gradient_norm=1e9, skip_gradient_norm=1e9)
    norms = []
    for dtype in ("float32", "mixed_float16"):
        tf.keras.utils.set_random_seed(0)
        steps = Steps(config, tf.distribute.get_strategy(), dtype)
        for _ in range(30):  # float16 overflows while the loss scale comes down: the loss-scale
            out = steps.train_step(images, tf.constant([0, 0], tf.int64))  # optimizer skips
            if np.isfinite(float(out["gradient_norm"])):  # those (weights unchanged) itself
                break
        norms.append(float(out["gradient_norm"]))
        assert float(out["skipped_updates"]) == 0  # overflows are not this guard's skips
    assert norms[1] == pytest.approx(norms[0], rel=0.05)


def test_the_cosine_schedule_falls_from_the_learning_rate_to_zero_at_the_last_step(
    tiny_config, tmp_path
):
    config = tiny_config.replace(learning_rate_schedule="cosine", learning_rate=1e-3)
    schedule = learning_rate_schedule(config, 8)
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * min(s, 8) / 8)) for s in range(10)]  # 0 from 8
    assert [learning_rate_at(schedule, s) for s in range(10)] == pytest.approx(expected, abs=1e-9)
    assert learning_rate_at(learning_rate_schedule(tiny_config), 5) == tiny_config.learning_rate
    with pytest.raises(ValueError, match="needs the run's length in steps; got 0"):
        learning_rate_schedule(config)
    train.train_and_evaluate(config, str(tmp_path))  # 2 epochs of 4 steps, logged every 2
    logged = scalar_events(tmp_path, "train")["learning_rate"]
    assert [step for step, _ in logged] == [2, 4, 6, 8]
    assert [v for _, v in logged] == pytest.approx([expected[s] for s in (2, 4, 6, 8)], abs=1e-9)
