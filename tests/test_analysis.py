import numpy as np
import tensorflow as tf

from tfvae.evaluation import curves as curves_lib
from tfvae.evaluation import latents as analysis


def test_mutual_information_and_mig_on_known_structure():
    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(4000, 3))
    disentangled = np.concatenate([factors, rng.normal(size=(4000, 2))], axis=1)  # z_i = v_i
    info = analysis.mutual_information(disentangled, factors, bins=10)
    assert info.shape == (5, 3)
    np.testing.assert_allclose(np.diag(info[:3]), np.log(10), rtol=1e-6)  # H of 10 equal bins
    assert info[3:].max() < 0.05 and info[:3][~np.eye(3, dtype=bool)].max() < 0.05
    assert analysis.mutual_information_gap(info, factors, bins=10) > 0.95
    mixed = factors @ rng.normal(size=(3, 5))  # every latent mixes every factor
    tangled = analysis.mutual_information(mixed, factors, bins=10)
    assert analysis.mutual_information_gap(tangled, factors, bins=10) < 0.3
    correlation = analysis.correlations(disentangled, factors)
    np.testing.assert_allclose(np.diag(correlation[:3]), 1.0, rtol=1e-9)


def test_loss_curves_read_back_what_training_wrote(tmp_path):
    for split, tag, values in (
        ("train", "loss", [9.0, 7.0, 5.0]),
        ("validation", "bound", [-8.0, -6.0]),
    ):
        with tf.summary.create_file_writer(str(tmp_path / split)).as_default():
            for step, value in enumerate(values):
                tf.summary.scalar(tag, value, step=10 * (step + 1))
    curves = curves_lib.loss_curves(str(tmp_path))
    np.testing.assert_array_equal(curves["train_steps"], [10, 20, 30])
    np.testing.assert_allclose(curves["train_loss"], [9, 7, 5])
    np.testing.assert_allclose(curves["validation_loss"], [8, 6])
    assert curves["mean_validation_loss"] == 7.0
    assert abs(curves["mean_validation_loss_standard_error"] - 1.0) < 1e-12  # std 1.414 / sqrt 2
    assert "train_minutes" not in curves  # no batch size: no clock


def test_training_minutes_add_each_logged_intervals_images_over_its_rate(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path / "train")).as_default():
        for step, (loss, rate) in {10: (9.0, 40.0), 30: (7.0, 80.0)}.items():
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("images_per_second", rate, step=step)
    with tf.summary.create_file_writer(str(tmp_path / "validation")).as_default():
        for step in (5, 20, 30):
            tf.summary.scalar("bound", -1.0, step=step)
    curves = curves_lib.loss_curves(str(tmp_path), batch_size=24)
    # 10 steps of 24 images at 40/s = 6 s; then 20 steps at 80/s = 6 s more
    np.testing.assert_allclose(curves["train_minutes"], [0.1, 0.2])
    np.testing.assert_allclose(curves["validation_minutes"], [np.nan, 0.15, 0.2])
