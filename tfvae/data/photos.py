"""Real photographs as a folder of 32x32 RGB patches, cut from photographs shipped in wheels.

The photographs come with installed packages, so nothing is downloaded: scikit-image's
`skimage/data` (astronaut, chelsea, coffee, motorcycle_left, rocket; only files its wheel ships,
never its pooch downloads), scikit-learn's sample images (china, flower) and matplotlib's sample
data (grace_hopper). A package that is not installed, or a file its version does not ship, is
skipped and named. Grayscale, scientific (microscopy, telescope, fundus) and synthetic images of
those packages are left out, and of scikit-image's stereo pair only the left view is used.

Each photograph keeps a horizontal band through its middle (a quarter of its height, rounded
down to whole patches) for validation: non-overlapping 32x32 tiles of the band. Training patches
are windows on a grid of `stride` pixels (overlapping when stride < 32) over the rows above and
below the band, `margin` rows away from it, so no training patch shares a pixel with any
validation patch. The folder holds one PNG per patch, `PHOTO-yROW-xCOL.png` (ROW, COL: the
patch's top-left pixel in its photograph), `list_eval_partition.txt` (CelebA's format: 0 train,
1 validation), which `--dataset=folder:PATH` reads, and `photos.json` (the photographs, their
bands, the counts and the packages' versions). The same inputs give the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
from importlib import metadata, resources

import numpy as np

from tfvae.runtime import files

PATCH = 32  # side of a patch, pixels
VALIDATION_SHARE = 0.25  # of a photograph's height, in the band held out for validation
DEFAULT_STRIDE = 8  # pixels between training windows
DEFAULT_MARGIN = 8  # rows between the band and any training patch
PARTITION_FILE = "list_eval_partition.txt"  # as tfvae.data.celeba.PARTITION_FILE
MANIFEST_FILE = "photos.json"
SPLIT_IDS = {"train": 0, "validation": 1}  # CelebA's partition ids (2, test: none here)

# (name, distribution, package holding the file, file in it): the photographs, in this order.
SHIPPED = (
    ("astronaut", "scikit-image", "skimage.data", "astronaut.png"),
    ("chelsea", "scikit-image", "skimage.data", "chelsea.png"),
    ("coffee", "scikit-image", "skimage.data", "coffee.png"),
    ("motorcycle_left", "scikit-image", "skimage.data", "motorcycle_left.png"),
    ("rocket", "scikit-image", "skimage.data", "rocket.jpg"),
    ("china", "scikit-learn", "sklearn.datasets.images", "china.jpg"),
    ("flower", "scikit-learn", "sklearn.datasets.images", "flower.jpg"),
    ("grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


@dataclasses.dataclass(frozen=True)
class Photograph:
    """One photograph: `pixels` uint8 [H, W, 3] in [0, 255], and where it came from."""

    name: str
    pixels: np.ndarray
    source: str = ""  # e.g. 'scikit-image 0.26.0: skimage.data/astronaut.png'


@dataclasses.dataclass(frozen=True)
class Built:
    """What `build` wrote: the folder, its manifest, the skipped photographs (one reason each)
    and the validation patches uint8 [N, 32, 32, 3] in file-name order."""

    path: str
    manifest: dict
    skipped: list
    validation: np.ndarray


def shipped_photographs() -> tuple[list[Photograph], list[str]]:
    """The photographs of SHIPPED that the installed packages hold, and a reason per skipped
    one ('rocket: scikit-image is not installed')."""
    from PIL import Image

    found, skipped = [], []
    for name, distribution, package, file in SHIPPED:
        try:
            version = metadata.version(distribution)
            resource = resources.files(package).joinpath(file)
            with resource.open("rb") as f:
                pixels = np.asarray(Image.open(f).convert("RGB"))
        except (metadata.PackageNotFoundError, ModuleNotFoundError):
            skipped.append(f"{name}: {distribution} is not installed")
            continue
        except OSError:
            skipped.append(f"{name}: {distribution} {version} does not ship {file}")
            continue
        found.append(Photograph(name, pixels, f"{distribution} {version}: {package}/{file}"))
    return found, skipped


def validation_band(height: int) -> tuple[int, int]:
    """Rows [top, bottom) held out of a photograph `height` pixels high: VALIDATION_SHARE of it
    rounded down to whole patches (at least one), centred."""
    rows = max(PATCH, int(height * VALIDATION_SHARE) // PATCH * PATCH)
    top = (height - rows) // 2
    return top, top + rows


def patch_origins(height: int, width: int, stride: int, margin: int) -> dict[str, list]:
    """Top-left (row, col) of every patch of a photograph [height, width], by split.

    Validation: the band's tiles side by side, centred across the width. Training: a grid of
    `stride` pixels over the rows [0, top - margin) and [bottom + margin, height), whole
    windows only.
    """
    top, bottom = validation_band(height)
    offset = (width % PATCH) // 2
    validation = [
        (y, x) for y in range(top, bottom, PATCH) for x in range(offset, width - PATCH + 1, PATCH)
    ]
    rows = [*range(0, top - margin - PATCH + 1, stride)]
    rows += range(bottom + margin, height - PATCH + 1, stride)
    train = [(y, x) for y in rows for x in range(0, width - PATCH + 1, stride)]
    return {"train": train, "validation": validation}


def _check(photographs, stride: int, margin: int) -> None:
    if not 1 <= stride <= PATCH:
        raise ValueError(f"Stride {stride} is not accepted; it must be in [1, {PATCH}] pixels.")
    if margin < 0:
        raise ValueError(f"Margin {margin} is not accepted; it must be >= 0 rows.")
    if not photographs:
        raise ValueError("No photographs: install scikit-image, scikit-learn or matplotlib.")
    names = [p.name for p in photographs]
    for photo in photographs:
        shape = photo.pixels.shape
        if photo.pixels.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"Photograph {photo.name!r} is not uint8 [H, W, 3]: {list(shape)}.")
        if not patch_origins(shape[0], shape[1], stride, margin)["train"]:
            raise ValueError(f"Photograph {photo.name!r} {list(shape)} is too small for patches.")
        if names.count(photo.name) > 1 or not photo.name.replace("_", "").isalnum():
            raise ValueError(f"Photograph name {photo.name!r} must be unique and alphanumeric.")


def _png(patch: np.ndarray) -> bytes:
    """One uint8 [32, 32, 3] patch as a PNG (Pillow, no metadata: the same bytes every time)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(patch, "RGB").save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def _write_patches(photographs, stride: int, margin: int, directory: str) -> tuple:
    """Writes every patch into `directory`; returns (manifest rows, partition lines,
    validation patches by file name)."""
    rows, partition, validation = [], [], {}
    for photo in photographs:
        height, width, _ = photo.pixels.shape
        counts = {}
        for split, origins in patch_origins(height, width, stride, margin).items():
            for y, x in origins:
                patch = photo.pixels[y : y + PATCH, x : x + PATCH]
                file = f"{photo.name}-y{y:04d}-x{x:04d}.png"
                with open(os.path.join(directory, file), "wb") as f:
                    f.write(_png(patch))
                partition.append(f"{file} {SPLIT_IDS[split]}")
                if split == "validation":
                    validation[file] = patch
            counts[split] = len(origins)
        top, bottom = validation_band(height)
        rows.append(
            {"name": photo.name, "source": photo.source, "height": height, "width": width,
             "validation_rows": [top, bottom], "train_patches": counts["train"],
             "validation_patches": counts["validation"]}
        )  # fmt: skip
    return rows, partition, validation


def build(
    output: str,
    photographs: list[Photograph] | None = None,
    stride: int = DEFAULT_STRIDE,
    margin: int = DEFAULT_MARGIN,
    overwrite: bool = False,
) -> Built:
    """Writes the patch folder at `output`, staged beside it and renamed into place.

    Args:
      output: the folder to write; an existing one is replaced only with `overwrite`.
      photographs: the photographs to cut (None: `shipped_photographs()`).
      stride: pixels between training windows, in [1, 32].
      margin: rows between the validation band and the nearest training patch, >= 0.

    Returns:
      `Built`: the folder, its manifest (also `output`/photos.json), what was skipped, and the
      validation patches uint8 [N, 32, 32, 3] in [0, 255], in file-name order (the loader's).
    """
    skipped = []
    if photographs is None:
        photographs, skipped = shipped_photographs()
    _check(photographs, stride, margin)
    if os.path.exists(output) and not overwrite:
        raise ValueError(f"{output} exists; give overwrite=True (--overwrite) to replace it.")
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", dir=parent)
    except OSError as error:
        raise ValueError(f"{output} cannot be written: {parent}: {error.strerror}.") from None
    try:
        rows, partition, validation = _write_patches(photographs, stride, margin, staging)
        manifest = {
            "patch_size": PATCH, "stride": stride, "margin": margin,
            "validation_share": VALIDATION_SHARE,
            "train_patches": sum(r["train_patches"] for r in rows),
            "validation_patches": sum(r["validation_patches"] for r in rows),
            "photographs": rows, "skipped": skipped,
        }  # fmt: skip
        files.write_atomically(
            os.path.join(staging, PARTITION_FILE), "".join(f"{p}\n" for p in sorted(partition))
        )
        files.write_atomically(
            os.path.join(staging, MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n"
        )
        os.chmod(staging, 0o755)  # mkdtemp's 0o700 would hide the folder from other users
        files.replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    patches = np.stack([validation[f] for f in sorted(validation, key=os.path.basename)])
    return Built(output, manifest, skipped, patches)
