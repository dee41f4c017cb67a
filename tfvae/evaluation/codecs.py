"""Lossless image codecs as baselines of bits/dim: what PNG, WebP and JPEG XL take to store the
very images a model was evaluated on, one file per image as a user would store them.

- `png`: Pillow, optimize=True, compress_level=9.
- `webp`: Pillow's WebP lossless, method=6 (slowest, smallest), quality=100 (the most effort).
- `jpegxl_e9`, `jpegxl_e10`: libjxl through `imagecodecs.jpegxl_encode(image, lossless=True,
  effort=9 or 10)`: lossless modular mode (distance 0), a bare codestream (no container), effort
  9 and libjxl's highest, 10 (much slower).

Every file is decoded back and compared with its image: a file that does not give the exact
pixels is an error, never a number. bits/dim of an image is 8 x (its file size in bytes) / D,
D = H*W*C, the same D as the model's bits/dim (every dimension counted); a set's figure is the
mean over images, with its standard error. A file's header is part of what a user stores, so it
is counted.
"""

from __future__ import annotations

import io

import numpy as np

CODECS = ("png", "webp", "jpegxl_e9", "jpegxl_e10")
NAMES = {"png": "PNG", "webp": "WebP", "jpegxl_e9": "JPEG XL e9", "jpegxl_e10": "JPEG XL e10"}
_SAVE_OPTIONS = {  # Pillow's
    "png": dict(format="PNG", optimize=True, compress_level=9),
    "webp": dict(format="WEBP", lossless=True, method=6, quality=100),
}
_JPEGXL_EFFORT = {"jpegxl_e9": 9, "jpegxl_e10": 10}
_JPEGXL_SIGNATURE = b"\xff\x0a"  # a bare JPEG XL codestream's first bytes


def encode(image, codec: str) -> bytes:
    """The file of one uint8 image [H, W, 3] in [0, 255] written as `codec` (Pillow for PNG and
    WebP, imagecodecs for JPEG XL)."""
    image = np.asarray(image, np.uint8)
    if codec in _JPEGXL_EFFORT:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(image, lossless=True, effort=_JPEGXL_EFFORT[codec]))
    from PIL import Image

    if codec not in _SAVE_OPTIONS:
        raise ValueError(f"Codec {codec!r} is unknown; accepted: {', '.join(CODECS)}.")
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, **_SAVE_OPTIONS[codec])
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """The uint8 image [H, W, 3] of a file's bytes (PNG, WebP or a bare JPEG XL codestream)."""
    if data.startswith(_JPEGXL_SIGNATURE):
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data))
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _checked_size(image, codec: str) -> int:
    """The size in bytes of `codec`'s file of one image, refused unless it decodes to it."""
    data = encode(image, codec)
    decoded = decode(data)
    if decoded.shape != image.shape or not np.array_equal(decoded, image):
        raise RuntimeError(
            f"The {NAMES[codec]} file of an image does not decode to its pixels; the codec's "
            "settings are not lossless."
        )
    return len(data)


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
    sizes = np.array([_checked_size(image, codec) for image in images], np.float64)
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


def verdict(model_bits_per_dim: float, codec_results: dict, subject: str = "the model") -> str:
    """One line comparing a model's bits/dim with each codec's on the same images: the codecs it
    beats (fewer bits/dim), the strongest last, and those it does not, with their bits/dim
    (`subject` names what has model_bits_per_dim: the model, or the file it wrote).

    For example '...; the model (1.711) beats PNG, WebP and JPEG XL e9 but not JPEG XL e10
    (1.660)'; when it beats none, '... does not beat PNG' (the weakest codec, usually PNG).
    """
    parts = [f"{NAMES.get(c, c)} {r['bits_per_dim']:.3f}" for c, r in codec_results.items()]
    head = f"codecs on the same images: {', '.join(parts)} bits/dim"
    if not codec_results:
        return head
    weakest_first = sorted(codec_results, key=lambda c: -codec_results[c]["bits_per_dim"])
    beaten = [c for c in weakest_first if model_bits_per_dim < codec_results[c]["bits_per_dim"]]
    unbeaten = [c for c in weakest_first if c not in beaten]
    model = f"{subject} ({model_bits_per_dim:.3f})"
    if not beaten:
        return f"{head}; {model} does not beat {NAMES.get(unbeaten[0], unbeaten[0])}"
    tail = f"{model} beats {_listed([NAMES.get(c, c) for c in beaten], 'and')}"
    if unbeaten:
        named = [f"{NAMES.get(c, c)} ({codec_results[c]['bits_per_dim']:.3f})" for c in unbeaten]
        tail += f" but not {_listed(named, 'or')}"
    return f"{head}; {tail}"


def _listed(names: list[str], conjunction: str) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
