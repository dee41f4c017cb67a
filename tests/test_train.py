import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae.training import loop, train
from tfvae.training.steps import Steps


def _batch(config, n=None):
    dataset = data.load(config.dataset, "train", config.data_dir, config.image_size, 64)
    return next(iter(dataset.batch(n or config.batch_size)))["image"]


def _steps(config, strategy=None, dtype="float32"):
    keras.utils.set_random_seed(config.seed)
    return Steps(config, strategy or tf.distribute.get_strategy(), dtype)


def _seed(step):
    return tf.constant([0, step], tf.int64)


def test_train_steps_lower_the_loss_and_trace_once(tiny_config):
    steps = _steps(tiny_config)
    images = _batch(tiny_config)
    losses = [float(steps.train_step(images, _seed(i))["loss"]) for i in range(30)]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    # One trace for all 30 steps: the step did not silently fall back to eager or retrace.
    assert steps.train_step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("dtype", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_give_finite_float32_losses(tiny_config, dtype):
    steps = _steps(tiny_config, dtype=dtype)
    if dtype == "mixed_float16":
        assert isinstance(steps.optimizer, keras.optimizers.LossScaleOptimizer)
    for i in range(2):
        out = steps.train_step(_batch(tiny_config), _seed(i))
        assert out["loss"].dtype == tf.float32 and np.isfinite(out["loss"])
    assert all(v.dtype == tf.float32 for v in steps.model.trainable_variables)


CONTROLS = dict(
    kl_weight=0.5,
    kl_warmup_steps=2,
    free_bits=0.1,
    ema_decay=0.9,
    clip_gradient_norm=50.0,
    skip_gradient_norm=1e6,
)


SKIPPING = dict(skip_gradient_norm=1e-3, ema_decay=0.5)  # every update skipped and undone

HIERARCHY = dict(  # a one-group hierarchy at 16x16 with the controls it is trained with
    architecture="hierarchical", latent_groups="8:1", latent_channels=2, residual_cells=1,
    likelihood="discretized_logistic_mixture", mixture_components=2, kl_warmup_steps=2,
    ema_decay=0.9, skip_gradient_norm=1e9,
)  # fmt: skip


@pytest.mark.parametrize(
    "controls",
    [{}, CONTROLS, SKIPPING, HIERARCHY],
    ids=["plain", "controls", "skipping", "hierarchical"],
)
def test_two_replicas_give_the_same_loss_and_weights_as_one(tiny_config, two_cpus, controls):
    config = tiny_config.replace(batch_size=8, **controls)
    images = _batch(config)
    results = []
    for strategy in (tf.distribute.get_strategy(), two_cpus):
        steps = _steps(config, strategy)
        distributed = next(
            iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(images)))
        )
        losses = [float(steps.train_step(distributed, _seed(i))["loss"]) for i in range(3)]
        weights = [v.numpy() for v in steps.model.weights]  # includes batch-norm statistics
        weights += [v.numpy() for v in steps.eval_model.weights]  # the EMA's, if any
        results.append((losses, weights))
    (one_losses, one_weights), (two_losses, two_weights) = results
    np.testing.assert_allclose(two_losses, one_losses, rtol=2e-5)
    for a, b in zip(one_weights, two_weights, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("changes", [{}, HIERARCHY], ids=["dcgan", "hierarchical"])
def test_resumed_training_equals_uninterrupted_training(tiny_config, tmp_path, changes):
    tiny_config = tiny_config.replace(**changes)
    whole = train.train_and_evaluate(tiny_config, str(tmp_path / "whole"))
    resumed_dir = str(tmp_path / "resumed")
    assert train.train_and_evaluate(tiny_config, resumed_dir, max_steps=3) == {}  # mid-epoch
    resumed = train.train_and_evaluate(tiny_config, resumed_dir)
    assert resumed == whole  # same floats, bit for bit


def test_event_files_hold_scalars_images_and_config(tiny_config, tmp_path):
    train.train_and_evaluate(tiny_config.replace(epochs=1), str(tmp_path))
    tags = {}
    for path in glob.glob(str(tmp_path / "*" / "events.out.tfevents.*")):
        split = os.path.basename(os.path.dirname(path))
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                tags.setdefault(split, {})[value.tag] = plugin
    assert tags["validation"]["inputs_and_reconstructions"] == "images"
    assert tags["validation"]["samples_from_fixed_prior_draws"] == "images"
    assert tags["train"]["config"] == "text"
    for name in ("loss", "bound", "elbo", "kl", "reconstruction", "images_per_second"):
        assert name in tags["train"]
    assert {"bound", "elbo", "bound_bits_per_dim"} <= set(tags["validation"])
    with open(tmp_path / "config.json") as f:
        assert config_lib.Config(**json.load(f)) == tiny_config.replace(epochs=1)


def test_a_model_dir_with_another_config_is_refused_untouched(tiny_config, tmp_path):
    config_lib.save(tiny_config, str(tmp_path / "config.json"))
    before = sorted(os.listdir(tmp_path)), (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match=r"Differing fields: k: 3 \(saved\) vs 1 \(requested\)"):
        train.train_and_evaluate(tiny_config.replace(k=1), str(tmp_path))
    assert (sorted(os.listdir(tmp_path)), (tmp_path / "config.json").read_text()) == before


def test_a_batch_not_divisible_by_the_replicas_is_refused(tiny_config, tmp_path):
    config = tiny_config.replace(batch_size=15, strategy="mirrored")
    with pytest.raises(ValueError, match="--batch_size` is 15; it must be divisible by the 2"):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "config.json")


def test_a_non_finite_loss_names_the_step():
    with pytest.raises(FloatingPointError, match="non-finite by step 7"):
        loop.mean_scalars([{"loss": 1.0}, {"loss": float("nan")}], 7)


def test_xla_compiled_step_matches_the_plain_step(tiny_config):
    images = _batch(tiny_config)
    losses = []
    for jit in (False, True):
        steps = _steps(tiny_config.replace(jit_compile=jit))
        losses.append([float(steps.train_step(images, _seed(i))["loss"]) for i in range(2)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)  # same noise, same loss
