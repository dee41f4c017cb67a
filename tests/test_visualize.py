import numpy as np
import pytest
import tensorflow as tf

from tfvae import config as config_lib
from tfvae.evaluation import upsampling as upsampling_lib
from tfvae.figures import visualize
from tfvae.models import vae as model


@pytest.fixture(scope="module")
def vae():
    return model.build(config_lib.Config(image_size=16, width=4, latent_dim=5))


def test_latent_interpolation_ends_are_the_decoded_endpoints(vae):
    z0, z1 = tf.random.stateless_normal([5], [0, 1]), tf.random.stateless_normal([5], [0, 2])
    for spherical in (False, True):
        images = visualize.latent_interpolation(vae, z0, z1, spherical=spherical).numpy()
        assert images.shape == (11, 16, 16, 3)
        np.testing.assert_allclose(images[-1], vae.sample(z=z0[None])[0], atol=1e-6)  # alpha 1
        np.testing.assert_allclose(images[0], vae.sample(z=z1[None])[0], atol=1e-6)  # alpha 0


def test_pixel_interpolation_is_exactly_linear_in_alpha():
    x0, x1 = tf.fill([4, 4, 3], 0.8), tf.fill([4, 4, 3], 0.2)
    images = visualize.pixel_interpolation(x0, x1).numpy()
    np.testing.assert_allclose(
        images[:, 0, 0, 0], 0.2 + 0.6 * np.array(visualize.ALPHAS), rtol=1e-6
    )


def test_a_traversal_changes_one_latent_coordinate_per_row(vae):
    centre = tf.random.stateless_normal([5], [3, 3])
    z = visualize.traversal_latents(centre, dims=[1, 4], values=[-3.0, 0.0, 3.0]).numpy()
    assert z.shape == (2, 3, 5)
    for row, dim in enumerate([1, 4]):
        changed = np.any(z[row] != centre.numpy()[None], axis=0)
        assert changed.tolist() == [d == dim for d in range(5)]
        np.testing.assert_array_equal(z[row, :, dim], [-3.0, 0.0, 3.0])
    assert visualize.traversal(vae, centre, [1, 4], [-3.0, 0.0, 3.0]).shape == (2, 3, 16, 16, 3)


def test_checkerboard_energy_separates_checkerboards_from_smooth_images():
    board = (np.indices((16, 16)).sum(0) % 2)[None, ..., None].repeat(3, -1).astype(float)
    y, x = np.mgrid[0:16, 0:16]
    smooth = np.stack([np.sin(x / 5.0) + np.cos(y / 7.0)] * 3, -1)[None] / 4 + 0.5
    assert upsampling_lib.checkerboard_energy(board)[0] == pytest.approx(1.0)
    assert upsampling_lib.checkerboard_energy(smooth)[0] < 0.01


def test_untrained_stride2_kernel3_deconv_makes_more_checkerboard_than_nearest():
    energies = {}
    for upsampling in ("deconv", "nearest"):
        config = config_lib.Config(
            image_size=32, width=8, latent_dim=8, kernel_size=3, upsampling=upsampling,
            likelihood="gaussian",
        )  # fmt: skip
        tf.keras.utils.set_random_seed(0)
        vae = model.build(config)
        images = vae.sample(64, seed=[0, 0])
        energies[upsampling] = upsampling_lib.checkerboard_energy(images).mean()
    assert energies["deconv"] > 2 * energies["nearest"]


def test_overlap_of_kernel3_stride2_is_uneven_and_of_kernel4_even():
    interior = (slice(1, -1), slice(1, -1))
    assert len(np.unique(upsampling_lib.transposed_conv_overlap(3, 2)[interior])) > 1
    assert np.unique(upsampling_lib.transposed_conv_overlap(4, 2)[interior]).tolist() == [4]
