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


def test_traversal_rows_are_grouped_by_factor_with_inactive_latents_last():
    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(4000, 4))
    factors[:, 3] = factors[:, 3] < 0.3  # binary, like glasses
    noise = rng.normal(size=(4000, 7))
    means = np.stack(
        [
            factors[:, 2],  # z0: factor 2 itself
            1e-3 * noise[:, 1],  # z1: inactive (variance 1e-6)
            -3.0 * factors[:, 0],  # z2: factor 0, rescaled
            factors[:, 2] + 0.1 * noise[:, 3],  # z3: factor 2, blurred (less information)
            factors[:, 1] + 0.2 * factors[:, 0],  # z4: mostly factor 1
            0.05 * noise[:, 5],  # z5: inactive (variance 0.0025), more active than z1
            2.0 * factors[:, 3] + 0.01 * noise[:, 6],  # z6: the binary factor
        ],
        axis=1,
    )
    rows = analysis.factor_rows(means, factors, dims=range(7), bins=10)
    assert [d for d, _, _ in rows] == [2, 4, 0, 3, 6, 5, 1]
    assert [f for _, f, _ in rows] == [0, 1, 2, 2, 3, -1, -1]
    value = {d: v for d, _, v in rows}
    np.testing.assert_allclose([value[0], value[2]], 1.0, rtol=1e-9)  # I(z; v) = H(v)
    assert 0.2 < value[3] < 0.9 and value[6] > 0.9 and value[1] == value[5] == 0.0
    assert [d for d, _, _ in analysis.factor_rows(means, factors, [3, 1, 0], bins=10)] == [0, 3, 1]


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
