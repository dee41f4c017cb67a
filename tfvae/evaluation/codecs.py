"""Lossless image codecs as baselines of bits/dim: what PNG and WebP take to store the very images
a model was evaluated on, one file per image as a user would store them.

- `png`: Pillow, optimize=True, compress_level=9.
- `webp`: Pillow's WebP lossless, method=6 (slowest, smallest), quality=100 (the most effort).

bits/dim of an image is 8 x (its file size in bytes) / D, D = H*W*C, the same D as the model's
bits/dim (every dimension counted); a set's figure is the mean over images, with its standard
error. A file's header is part of what a user stores, so it is counted.
"""

from __future__ import annotations

import io

import numpy as np

CODECS = ("png", "webp")
NAMES = {"png": "PNG", "webp": "WebP"}  # as printed
_SAVE_OPTIONS = {
    "png": dict(format="PNG", optimize=True, compress_level=9),
    "webp": dict(format="WEBP", lossless=True, method=6, quality=100),
}


def encode(image, codec: str) -> bytes:
    """The file of one uint8 image [H, W, 3] in [0, 255] written by Pillow as `codec`."""
    from PIL import Image

    if codec not in _SAVE_OPTIONS:
        raise ValueError(f"Codec {codec!r} is unknown; accepted: {', '.join(CODECS)}.")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), "RGB").save(buffer, **_SAVE_OPTIONS[codec])
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """The uint8 image [H, W, 3] of a file's bytes."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def bits_per_dim(images, codec: str) -> dict:
    """A codec's bits/dim on uint8 images [N, H, W, 3], each its own file.

    Returns {"bits_per_dim": mean over images, "bits_per_dim_standard_error": its standard
    error (0 for one image), "bytes": total bytes of the N files, "num_images": N}.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
        raise ValueError(
            f"Images are {images.dtype} {list(images.shape)}; they must be uint8 [N, H, W, 3]."
        )
    sizes = np.array([len(encode(image, codec)) for image in images], np.float64)
    bits = 8.0 * sizes / float(np.prod(images.shape[1:]))
    error = bits.std(ddof=1) / np.sqrt(len(bits)) if len(bits) > 1 else 0.0
    return {
        "bits_per_dim": float(bits.mean()),
        "bits_per_dim_standard_error": float(error),
        "bytes": int(sizes.sum()),
        "num_images": len(images),
    }


def baselines(images) -> dict:
    """{codec: `bits_per_dim(images, codec)`} for every codec of CODECS."""
    return {codec: bits_per_dim(images, codec) for codec in CODECS}


def verdict(model_bits_per_dim: float, codec_results: dict) -> str:
    """One line comparing a model's bits/dim with each codec's on the same images."""
    parts = [f"{NAMES[codec]} {r['bits_per_dim']:.3f}" for codec, r in codec_results.items()]
    png = codec_results.get("png", {}).get("bits_per_dim")
    if png is None:
        return f"codecs on the same images: {', '.join(parts)} bits/dim"
    beaten = [NAMES[c] for c, r in codec_results.items() if model_bits_per_dim < r["bits_per_dim"]]
    if model_bits_per_dim >= png:
        tail = f"the model ({model_bits_per_dim:.3f}) does not beat PNG"
    else:
        tail = f"the model ({model_bits_per_dim:.3f}) beats {' and '.join(beaten)}"
    return f"codecs on the same images: {', '.join(parts)} bits/dim; {tail}"
