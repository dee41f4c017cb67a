"""The built-in offline dataset: procedurally drawn 64x64 faces with known generative factors.

Each image is a cartoon face drawn from eight factors that echo what the report saw along
CelebA's latent directions (gender-like hair, hair length, head turn, ...). The factors are the
`"labels"` of each example, float32 [8], in the order of `LABEL_NAMES`, each scaled to [0, 1]
(head_turn: 0 = full left, 0.5 = frontal, 1 = full right; glasses: 0 or 1).

Drawing is vectorised over images with numpy, 16 faces at a time with channels first (about
0.5 s per 1,000 images on one core; 4x faster than 500 at a time in [N, H, W, 3], the same
pixels), seeded, and cached under the data directory in blocks of 500 images as they are first
asked for: a run on the first 64 training images draws one block, not the 10,000.
"""

from __future__ import annotations

import os

import numpy as np

from tfvae.runtime import files

IMAGE_SIZE = 64
LABEL_NAMES = (
    "skin_tone",
    "hair_color",
    "hair_length",
    "head_turn",
    "face_size",
    "smile",
    "glasses",
    "background",
)
SPLIT_SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000}
_VERSION = "v1"
_DATASET_SEED = 20261125  # fixed: the data never depends on the training --seed
_CHUNK = 500

_SKIN = np.array([[244, 208, 180], [198, 150, 110], [96, 60, 40]], np.float32)
_HAIR = np.array([[25, 20, 18], [105, 62, 32], [176, 84, 40], [226, 196, 120]], np.float32)
_BACKGROUND = np.array(
    [[70, 110, 190], [90, 170, 120], [200, 190, 170], [190, 90, 90], [120, 90, 160]], np.float32
)


def _palette(colors: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp: t [N] in [0,1] -> [3, N, 1, 1] float32 in [0, 255]."""
    position = t * (len(colors) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(colors) - 2)
    frac = (position - low)[:, None]
    rgb = colors[low] * (1 - frac) + colors[low + 1] * frac  # [N, 3]
    return rgb.T[:, :, None, None]


def _ellipse(u, v, cx, cy, rx, ry, pixel):
    """Anti-aliased coverage in [0,1] of an ellipse, [N, H, W]; all geometry in [-1,1] units."""
    distance = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
    return np.clip((1.0 - distance) * np.minimum(rx, ry) / pixel + 0.5, 0.0, 1.0)


def _band(signed_distance, half_width, pixel):
    """Anti-aliased coverage of the set |signed_distance| < half_width."""
    return np.clip((half_width - np.abs(signed_distance)) / pixel + 0.5, 0.0, 1.0)


def _paint(image, coverage, color):
    """Alpha-composites `color` [3, N, 1, 1] over `image` [3, N, H, W] (channels first, each
    plane contiguous) with coverage [N, H, W], in place: image * (1 - alpha) + color * alpha,
    on the rows some coverage reaches (elsewhere that leaves the image exactly as it is)."""
    coverage = np.broadcast_to(coverage, image.shape[1:])
    rows = np.flatnonzero(coverage.any((0, 2)))
    if len(rows) == 0:
        return image
    band = slice(rows[0], rows[-1] + 1)
    part, alpha = image[:, :, band], coverage[:, band]
    part *= 1.0 - alpha
    part += color * alpha
    return image


def draw_faces(factors: np.ndarray, jitter: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Draws faces, `chunk` at a time (their float32 planes stay in the CPU's cache).

    Args:
      factors: float32 [N, 8] in [0, 1], columns as LABEL_NAMES.
      jitter: float32 [N, 2] face-centre offsets in [-1, 1] image units (a nuisance factor).

    Returns:
      uint8 [N, 64, 64, 3] in [0, 255]; each face's pixels do not depend on `chunk`.
    """
    out = np.empty((len(factors), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for start in range(0, len(factors), chunk):
        part = slice(start, start + chunk)
        planes = _draw_planes(factors[part], jitter[part])  # [3, n, 64, 64]
        out[part] = np.clip(np.rint(planes), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)
    return out


def _draw_planes(factors: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """float32 [3, N, 64, 64] in about [0, 255]: the faces of `draw_faces`, channels first."""
    n = len(factors)
    skin, hair_color, hair_length, turn, size, smile, glasses, background = (
        factors[:, i].reshape(n, 1, 1) for i in range(8)
    )
    turn = 2.0 * turn - 1.0  # [-1, 1]
    pixel = 2.0 / IMAGE_SIZE
    coords = (np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5) * pixel - 1.0
    u, v = coords[None, None, :], coords[None, :, None]  # x to the right, y down

    cx = jitter[:, 0].reshape(n, 1, 1)
    cy = 0.08 + jitter[:, 1].reshape(n, 1, 1)
    rx = (0.36 + 0.16 * size) * (1.0 - 0.12 * np.abs(turn))
    ry = (0.36 + 0.16 * size) * 1.28
    shift = 0.38 * rx * turn  # features slide towards the side the head turns to

    bg = _palette(_BACKGROUND, background.ravel())
    shape = (3, n, IMAGE_SIZE, IMAGE_SIZE)
    image = np.broadcast_to(bg * (1.05 - 0.25 * (v + 1) / 2), shape).copy()
    hair_rgb = _palette(_HAIR, hair_color.ravel())
    skin_rgb = _palette(_SKIN, skin.ravel())

    # Long hair behind the face: a rounded panel whose bottom edge moves down with hair_length.
    bottom = cy - 0.2 * ry + (0.15 + 1.9 * hair_length) * ry
    panel_height = (bottom - (cy - 1.1 * ry)) / 2
    panel = _ellipse(u, v, cx, bottom - panel_height, 1.32 * rx, panel_height, pixel)
    image = _paint(image, panel * (hair_length > 0.12), hair_rgb)
    # Neck, then the face with a soft light from the left.
    neck = _ellipse(u, v, cx + 0.5 * shift, cy + 1.25 * ry, 0.45 * rx, 0.5 * ry, pixel)
    image = _paint(image, neck, skin_rgb * 0.85)
    face = _ellipse(u, v, cx, cy, rx, ry, pixel)
    shade = 1.08 - 0.18 * np.clip((u - cx) / rx, -1, 1)  # [N, 1, W]
    image = image * (1 - face) + np.clip(skin_rgb * shade, 0, 255) * face
    # Hair cap over the forehead.
    cap = _ellipse(u, v, cx - 0.25 * shift, cy - 0.18 * ry, 1.1 * rx, 0.98 * ry, pixel)
    cap *= np.clip((cy - 0.45 * ry + 0.08 * turn * (u - cx) - v) / pixel + 0.5, 0, 1)
    image = _paint(image, cap, hair_rgb)
    # Eyes, nose, mouth.
    eye_y = cy - 0.08 * ry
    eye_dx = 0.36 * rx
    dark = np.array([30, 25, 30], np.float32)[:, None, None, None]
    for side in (-1.0, 1.0):
        eye = _ellipse(u, v, cx + shift + side * eye_dx, eye_y, 0.1 * rx, 0.07 * ry, pixel)
        image = _paint(image, eye, dark)
        ring = _band(
            np.sqrt((u - cx - shift - side * eye_dx) ** 2 + (v - eye_y) ** 2) - 0.2 * rx,
            0.035,
            pixel,
        )
        image = _paint(image, ring * glasses, dark)
    bridge = _band(v - eye_y, 0.03, pixel) * (np.abs(u - cx - shift) < 0.16 * rx)
    image = _paint(image, bridge * glasses, dark)
    nose = _ellipse(u, v, cx + 1.25 * shift, cy + 0.18 * ry, 0.08 * rx, 0.12 * ry, pixel)
    image = _paint(image, nose, skin_rgb * 0.72)
    mouth_x = (u - cx - shift) / (0.34 * rx)
    curve = cy + 0.5 * ry - (smile - 0.35) * 0.22 * ry * (mouth_x**2 - 1.0)
    mouth = _band(v - curve, 0.025 + 0.03 * smile, pixel) * np.clip(
        (1.0 - np.abs(mouth_x)) * 0.34 * rx / pixel + 0.5, 0, 1
    )
    return _paint(image, mouth, np.array([150, 40, 50], np.float32)[:, None, None, None])


def _split_draws(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every image's factors float32 [N, 8] and jitter float32 [N, 2] of one split."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"Split {split!r} of 'builtin' is unknown; accepted: {list(SPLIT_SIZES)}.")
    rng = np.random.default_rng([_DATASET_SEED, list(SPLIT_SIZES).index(split)])
    n = SPLIT_SIZES[split]
    return sample_factors(n, rng), sample_jitter(n, rng)


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Factors float32 [n, 8] drawn as the dataset draws them: each uniform on [0, 1], glasses
    1 with probability 0.3."""
    factors = rng.uniform(size=(n, len(LABEL_NAMES))).astype(np.float32)
    glasses = LABEL_NAMES.index("glasses")
    factors[:, glasses] = factors[:, glasses] < 0.3
    return factors


def sample_jitter(n: int, rng: np.random.Generator) -> np.ndarray:
    """Face-centre offsets float32 [n, 2] drawn as the dataset draws them (a nuisance)."""
    return rng.uniform(-0.06, 0.06, size=(n, 2)).astype(np.float32)


def load_arrays(split: str, cache_dir: str, size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,64,64,3] and labels float32 [N,8] of the first `size` examples of a split
    (0 or more than the split: all of it). Each block of 500 is drawn once, then cached."""
    factors, jitter = _split_draws(split)
    whole = os.path.join(cache_dir, "builtin_faces", _VERSION, f"{split}.npz")
    if os.path.exists(whole):  # a cache written whole by an earlier version: the same images
        with np.load(whole) as cached:
            return cached["images"][: size or None], cached["labels"][: size or None]
    count = min(size or len(factors), len(factors))
    images = []
    for start in range(0, count, _CHUNK):
        path = os.path.join(cache_dir, "builtin_faces", _VERSION, split, f"{start:05d}.npz")
        if os.path.exists(path):
            with np.load(path) as cached:
                block = cached["images"]
            if len(block) == min(_CHUNK, len(factors) - start):  # else drawn again below
                images.append(block)
                continue
        block = draw_faces(factors[start : start + _CHUNK], jitter[start : start + _CHUNK])
        files.write_atomically(path, lambda f, block=block: np.savez(f, images=block))
        images.append(block)
    return np.concatenate(images)[:count], factors[:count]
