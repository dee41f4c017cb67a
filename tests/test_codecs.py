"""The lossless codec baselines: the sizes of the files Pillow and imagecodecs write, lossless
(checked), and bounded by the entropy of incompressible images; the verdict's codecs."""

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


@pytest.mark.parametrize("codec", ["png", "webp"])
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


@pytest.mark.parametrize("effort", [9, 10])
def test_jpegxl_is_the_size_of_the_files_imagecodecs_writes_and_round_trips(effort, tmp_path):
    import imagecodecs

    codec = f"jpegxl_e{effort}"
    noise = np.random.default_rng(2).integers(0, 256, [2, 16, 16, 3]).astype(np.uint8)
    images = np.concatenate([_images(), noise])  # smooth and random
    sizes = []
    for i, image in enumerate(images):  # a user's own files, written the documented way
        path = tmp_path / f"{i}.jxl"
        path.write_bytes(imagecodecs.jpegxl_encode(image, lossless=True, effort=effort))
        sizes.append(path.stat().st_size)
        np.testing.assert_array_equal(imagecodecs.jpegxl_decode(path.read_bytes()), image)
        np.testing.assert_array_equal(codecs.decode(codecs.encode(image, codec)), image)
    result = codecs.bits_per_dim(images, codec)
    assert result["bytes"] == sum(sizes) and result["num_images"] == 7
    assert result["bits_per_dim"] == pytest.approx(np.mean(8 * np.array(sizes) / 768), rel=1e-12)


def test_a_file_that_does_not_decode_to_its_image_is_refused(monkeypatch):
    import imagecodecs

    def lossy(image, codec):  # JPEG XL's default, VarDCT at distance 2
        return imagecodecs.jpegxl_encode(image, lossless=False, distance=2.0)

    monkeypatch.setattr(codecs, "encode", lossy)
    noise = np.random.default_rng(3).integers(0, 256, [1, 16, 16, 3]).astype(np.uint8)
    with pytest.raises(RuntimeError, match="JPEG XL e9 file of an image does not decode to its"):
        codecs.bits_per_dim(noise, "jpegxl_e9")


@pytest.mark.parametrize("codec", codecs.CODECS)
def test_noise_costs_at_least_its_entropy_and_a_flat_image_almost_nothing(codec):
    noise = np.random.default_rng(1).integers(0, 256, [3, 32, 32, 3]).astype(np.uint8)
    assert codecs.bits_per_dim(noise, codec)["bits_per_dim"] >= 8.0  # 8 bits of entropy a dim
    flat = np.full([3, 32, 32, 3], 128, np.uint8)
    assert codecs.bits_per_dim(flat, codec)["bits_per_dim"] < 0.5


def test_the_verdict_says_whether_the_model_beats_png():
    results = {"png": {"bits_per_dim": 2.33}, "webp": {"bits_per_dim": 1.83}}
    assert codecs.verdict(4.43, results).endswith("the model (4.430) does not beat PNG")
    assert codecs.verdict(2.0, results).endswith("the model (2.000) beats PNG but not WebP (1.830)")
    assert codecs.verdict(1.5, results).endswith("beats PNG and WebP")
    with pytest.raises(ValueError, match=r"must be uint8 \[N, H, W, 3\]"):
        codecs.bits_per_dim(np.zeros([2, 4, 4, 3]), "png")
    with pytest.raises(ValueError, match="accepted: png, webp"):
        codecs.encode(np.zeros([4, 4, 3], np.uint8), "jpeg")


def test_the_verdict_names_the_strongest_codec_beaten_and_those_not():
    results = {
        c: {"bits_per_dim": b}
        for c, b in zip(codecs.CODECS, [2.329, 1.828, 1.751, 1.660], strict=True)
    }
    head = "codecs on the same images: PNG 2.329, WebP 1.828, JPEG XL e9 1.751, JPEG XL e10 1.660"
    assert codecs.verdict(1.5, results) == (
        f"{head} bits/dim; the model (1.500) beats PNG, WebP, JPEG XL e9 and JPEG XL e10"
    )
    assert codecs.verdict(1.711, results).endswith(
        "; the model (1.711) beats PNG, WebP and JPEG XL e9 but not JPEG XL e10 (1.660)"
    )
    assert codecs.verdict(1.8, results).endswith(
        "; the model (1.800) beats PNG and WebP but not JPEG XL e9 (1.751) or JPEG XL e10 (1.660)"
    )
    assert codecs.verdict(2.0, results).endswith(
        "the model (2.000) beats PNG but not WebP (1.828), JPEG XL e9 (1.751) or JPEG XL e10 "
        "(1.660)"
    )
    assert codecs.verdict(3.0, results) == f"{head} bits/dim; the model (3.000) does not beat PNG"
    assert codecs.verdict(1.751, results).endswith(
        "WebP but not JPEG XL e9 (1.751) or JPEG XL e10 (1.660)"
    )  # a tie does not beat
    # Named weakest first whatever their order: here WebP did worse than PNG.
    swapped = {"png": {"bits_per_dim": 2.0}, "webp": {"bits_per_dim": 2.5}}
    assert codecs.verdict(2.2, swapped).endswith("the model (2.200) beats WebP but not PNG (2.000)")
    assert codecs.verdict(2.7, swapped).endswith("the model (2.700) does not beat WebP")
