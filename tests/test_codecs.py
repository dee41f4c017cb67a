"""The lossless codec baselines: the sizes of the files Pillow writes, lossless, and bounded by
the entropy of incompressible images."""

import numpy as np
import pytest
from PIL import Image

from tfvae.evaluation import codecs


def _images(seed=0, count=5, size=16):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    smooth = [(np.stack([x * a, y * b, (x + y) * c], -1) % 256) for a, b, c in
              rng.integers(1, 9, [count, 3])]  # fmt: skip
    return np.stack(smooth).astype(np.uint8)


@pytest.mark.parametrize("codec", codecs.CODECS)
def test_bits_per_dim_is_the_size_of_the_files_pillow_writes(codec, tmp_path):
    images = _images()
    options = {
        "png": dict(optimize=True, compress_level=9),
        "webp": dict(lossless=True, method=6, quality=100),
    }[codec]
    sizes = []
    for i, image in enumerate(images):  # a user's own files, written the documented way
        path = tmp_path / f"{i}.{codec}"
        Image.fromarray(image).save(path, **options)
        sizes.append(path.stat().st_size)
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), image)
    result = codecs.bits_per_dim(images, codec)
    bits = 8 * np.array(sizes) / (16 * 16 * 3)
    assert result["bytes"] == sum(sizes) and result["num_images"] == 5
    assert result["bits_per_dim"] == pytest.approx(bits.mean(), rel=1e-12)
    assert result["bits_per_dim_standard_error"] == pytest.approx(
        bits.std(ddof=1) / np.sqrt(5), rel=1e-12
    )
    for image in images:  # lossless
        np.testing.assert_array_equal(codecs.decode(codecs.encode(image, codec)), image)


@pytest.mark.parametrize("codec", codecs.CODECS)
def test_noise_costs_at_least_its_entropy_and_a_flat_image_almost_nothing(codec):
    noise = np.random.default_rng(1).integers(0, 256, [3, 32, 32, 3]).astype(np.uint8)
    assert codecs.bits_per_dim(noise, codec)["bits_per_dim"] >= 8.0  # 8 bits of entropy a dim
    flat = np.full([3, 32, 32, 3], 128, np.uint8)
    assert codecs.bits_per_dim(flat, codec)["bits_per_dim"] < 0.5


def test_the_verdict_says_whether_the_model_beats_png():
    results = {"png": {"bits_per_dim": 2.33}, "webp": {"bits_per_dim": 1.83}}
    assert codecs.verdict(4.43, results).endswith("the model (4.430) does not beat PNG")
    assert codecs.verdict(2.0, results).endswith("the model (2.000) beats PNG")
    assert codecs.verdict(1.5, results).endswith("beats PNG and WebP")
    with pytest.raises(ValueError, match=r"must be uint8 \[N, H, W, 3\]"):
        codecs.bits_per_dim(np.zeros([2, 4, 4, 3]), "png")
    with pytest.raises(ValueError, match="accepted: png, webp"):
        codecs.encode(np.zeros([4, 4, 3], np.uint8), "jpeg")
