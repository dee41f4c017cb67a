"""A set of images to one compressed file and back (`bitsback` batches, `container` format).

The chain is seeded (never an empty stack: pops from nothing cost their bits twice) with the
JPEG XL lossless files of the first images, as many as hold the bits the first image's latents
may pop (latent_dim x B); they are stored as those files, inside the stack, and come back as its
last words. The other images follow in batches that grow from one image to `batch_size` as the
stack fills, each no larger than the stack's bits can feed: the batch sizes are in the header, so
the decoder runs the model on the same shapes, last batch first. `round_trip` writes a file,
reads it back and checks the pixels, and measures the coder beside the model's forward pass.
"""

from __future__ import annotations

import os
import time
import zipfile

import numpy as np
import tensorflow as tf

from tfvae.compression import ans, bitsback, container, latents

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_images(path: str) -> tuple[list[str], list[np.ndarray], int]:
    """(base names sorted, uint8 images [H, W, 3], the files' total bytes) of a folder's or a
    zip's image files; one line (ValueError) for no such folder or zip, or none in it."""
    from tfvae.evaluation import codecs

    if os.path.isdir(path):
        members = [n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)]
        read = lambda n: _read(os.path.join(path, n))  # noqa: E731
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if n.lower().endswith(IMAGE_EXTENSIONS)]
        read = archive.read
    else:
        raise ValueError(f"--images={path}: no such directory or zip file.")
    if not members:
        raise ValueError(f"--images={path} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
    members = sorted(members, key=os.path.basename)
    names = [os.path.basename(n) for n in members]
    stems = [os.path.splitext(n)[0] for n in names]
    if len(set(stems)) < len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise ValueError(f"--images={path} has two images named {twice}.*; names must differ.")
    encoded = [read(n) for n in members]
    return names, [codecs.decode(data) for data in encoded], sum(map(len, encoded))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def check_images(names, images, image_size: int) -> np.ndarray:
    """The images as uint8 [N, S, S, 3]; one line naming the first of another size."""
    for name, image in zip(names, images, strict=True):
        if image.shape != (image_size, image_size, 3):
            h, w = image.shape[:2]
            raise ValueError(
                f"Image {name} is {w}x{h}; this model codes {image_size}x{image_size} RGB images."
            )
    return np.stack(images).astype(np.uint8)


def check_codable(model, image_shape, grid=None) -> None:
    """One line (ValueError) unless this coder can code the model's images [H, W, C]: the model's
    walk gives every latent group as a diagonal Gaussian under a diagonal Gaussian prior, and
    p(x|z) is over the 256 levels. Checked by coding one black image, as `compress` would."""
    grid = grid or latents.default()
    black = np.zeros([1, *image_shape], np.uint8)
    if hasattr(grid, "fitted"):
        grid = grid.fitted(model, black, 1)
    coder = ans.seeded(bytes(4 * model.latent_dim * grid.bits))
    bitsback.encode(coder, model, black, grid)


def _seed(images, latent_dim: int, bits: int) -> list[bytes]:
    """JPEG XL lossless files of the first images, enough to hold latent_dim x bits bits."""
    from tfvae.evaluation import codecs

    files, total = [], 0
    while len(files) < len(images) and total < latent_dim * bits:
        files.append(codecs.encode(images[len(files)], "jpegxl_e9"))
        total += 8 * len(files[-1])
    return files


def compress(model, names, images, model_fingerprint: dict, batch_size: int = 16,
             grid=None, progress=None) -> tuple[bytes, dict]:  # fmt: skip
    """(the file's bytes, its numbers) of uint8 images [N, H, W, C] named `names`, the latents
    on `grid` (a discretisation of `latents`; None: `latents.default()`).

    The numbers: bytes, bits_per_dim (8 bytes / (N D)), seed_images and seed_bytes (the JPEG XL
    files the chain starts from), chain_bits_per_dim (the rest's share over the other images),
    coding_prior_saving_bits_per_dim (what a coding prior fitted to the chain's images saves
    over the model's prior in expectation, over the chain's images: its file sits that much
    below the model's -ELBO; the fit is part of the encoding's time).
    """
    images = np.asarray(images, np.uint8)
    grid = grid or latents.default()
    seed = _seed(images, model.latent_dim, grid.bits)
    if hasattr(grid, "fitted"):  # a coding prior fitted to the chain's images, in the header
        chained = images[len(seed) :]
        if len(chained):
            grid = grid.fitted(model, chained, batch_size)
        else:  # nothing to code under it
            grid = latents.Grid(grid.bits, grid.radius, grid.sigmas, coding="model")
    bits = grid.bits
    coder = ans.seeded(b"".join(seed))
    start_bits, batches, done = coder.num_bits(), [], len(seed)
    if progress:
        progress(len(seed))
    while done < len(images):
        fed = coder.num_bits() // (model.latent_dim * bits)
        size = int(min(batch_size, len(images) - done, max(1, fed)))
        bitsback.encode(coder, model, images[done : done + size], grid)
        batches.append(size)
        done += size
        if progress:
            progress(size)
    header = {
        "model": model_fingerprint,
        "image_shape": list(images.shape[1:]),
        "count": len(images),
        "names": list(names),
        "discretisation": grid.describe(),
        "batches": batches,
        "seed": {"codec": "jpegxl lossless", "bytes": [len(f) for f in seed]},
        "pixels_sha256": container.pixels_sha256(images),
    }
    data = container.pack(header, ans.words_of(coder))
    dims = images[0].size
    chain = len(images) - len(seed)
    numbers = {
        "num_images": len(images),
        "bytes": len(data),
        "bits_per_dim": 8 * len(data) / (len(images) * dims),
        "seed_images": len(seed),
        "seed_bytes": sum(map(len, seed)),
        "header_bytes": len(data) - 4 * len(ans.words_of(coder)),
        "chain_bits_per_dim": (coder.num_bits() - start_bits) / (chain * dims) if chain else None,
        "coding_prior_saving_bits_per_dim": (
            getattr(grid, "saving_nats", 0.0) / (dims * np.log(2)) if chain else None
        ),
    }
    return data, numbers


def check_header(header: dict, model_fingerprint: dict, name: str) -> None:
    """One line (ValueError) when the file was written with another model."""
    found = header.get("model", {})
    for key, what in (("config_sha256", "config.json"), ("weights_sha256", "weights")):
        if found.get(key) != model_fingerprint[key]:
            raise ValueError(
                f"{name} was compressed with another model (its {what} differ from this run's); "
                "decode it with the --model_dir it was made with."
            )


def parse_header(model, header: dict, name: str = "the file") -> tuple:
    """(image shape, latent discretisation, batch sizes, seed file lengths, names) of a file's
    header, refused in one line (ValueError: "corrupted") where a field is missing or the
    discretisation is malformed or not this model's latent groups."""
    try:
        shape = tuple(header["image_shape"])
        batches, seed_lengths = header["batches"], header["seed"]["bytes"]
        names = header["names"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{name} is corrupted (its header lacks a field).") from None
    try:
        grid = latents.from_description(header["discretisation"])
        if hasattr(grid, "check_groups"):
            grid.check_groups(model.group_shapes())
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{name} is corrupted (its latent discretisation is malformed).") from None
    return shape, grid, batches, seed_lengths, names


def decompress(model, data: bytes, model_fingerprint: dict, name: str = "the file",
               progress=None) -> tuple[list[str], np.ndarray]:  # fmt: skip
    """(names, uint8 images [N, H, W, C]) of a file's bytes, refused in one line (ValueError)
    unless it is whole, of this format and model, and decodes to the pixels it was made of."""
    header, words = container.unpack(data, name)
    check_header(header, model_fingerprint, name)
    shape, grid, batches, seed_lengths, names = parse_header(model, header, name)
    coder, decoded = ans.message(words), []
    for size in reversed(batches):
        decoded.append(bitsback.decode(coder, model, size, shape, grid))
        if progress:
            progress(size)
    seed_bytes = ans.unseal(coder, sum(seed_lengths))
    seed = _decode_seed(seed_bytes, seed_lengths, name)
    if progress:
        progress(len(seed))
    images = np.concatenate([*seed, *reversed(decoded)])
    if len(names) != len(images) or container.pixels_sha256(images) != header["pixels_sha256"]:
        raise ValueError(
            f"{name} did not decode to the pixels it was made of (another TensorFlow or numpy "
            "build computes other probabilities, or the file is corrupted); nothing written."
        )
    return names, images


def _decode_seed(data: bytes, lengths, name: str) -> list[np.ndarray]:
    from tfvae.evaluation import codecs

    images, offset = [], 0
    for length in lengths:
        try:
            images.append(codecs.decode(data[offset : offset + length])[None])
        except Exception:  # a codec's own error on bytes that are not its file  # noqa: BLE001
            raise ValueError(f"{name} is corrupted (its seed images do not decode).") from None
        offset += length
    return images


# ------------------------------------------- a round trip, measured (tfvae-bpp --compress)


def forward_seconds(model, images, batches) -> float:
    """Seconds of the model's log-weight pass (K = 1: encoder, one draw, decoder) over uint8
    images [N, H, W, C] cut in `batches` (sizes), eagerly as the coder runs the model."""
    start, done = time.perf_counter(), 0
    for size in batches:
        x = tf.convert_to_tensor(images[done : done + size].astype(np.float32) / 255.0)
        model.log_weights(x, 1, seed=[0, done]).numpy()
        done += size
    return time.perf_counter() - start


def round_trip(model, names, images, fingerprint: dict, path: str, batch_size: int = 16,
               grid=None, progress=None) -> dict:  # fmt: skip
    """Compresses uint8 images [N, H, W, C] to `path` (written atomically), reads the file back,
    decodes it and checks the pixels: ValueError (one line; the file removed) unless identical.

    Returns `compress.compress`'s numbers and: file, discretisation (the header's, a fitted
    coding prior's numbers included), seed_bits_per_dim (the seed files' share
    of bits_per_dim), encode/decode seconds and images/s (every image, the seed's included),
    forward_seconds (`forward_seconds` on the chain's batches) and encode/decode_to_forward
    (the coder's time over it), decoded_pixels_sha256 (of the decoded pixels)."""
    from tfvae.runtime import files

    images = np.asarray(images, np.uint8)
    start = time.perf_counter()
    data, numbers = compress(model, names, images, fingerprint, batch_size, grid, progress)
    encode_seconds = time.perf_counter() - start
    files.write_atomically(path, data)
    with open(path, "rb") as f:
        written = f.read()
    start = time.perf_counter()
    try:
        decoded_names, decoded = decompress(model, written, fingerprint, path)
    except ValueError:
        os.remove(path)
        raise
    decode_seconds = time.perf_counter() - start
    if list(decoded_names) != list(names) or not np.array_equal(decoded, images):
        os.remove(path)
        raise ValueError(f"{path} did not decode to the images it was made of; removed.")
    header, _ = container.unpack(written, path)
    seed = numbers["seed_images"]
    forward = forward_seconds(model, images[seed:], header["batches"])
    return {
        **numbers,
        "file": path,
        "bytes": len(written),
        "bits_per_dim": 8 * len(written) / images.size,
        "seed_bits_per_dim": 8 * numbers["seed_bytes"] / images.size,
        "round_trip": "identical",
        "discretisation": header["discretisation"],
        "decoded_pixels_sha256": container.pixels_sha256(decoded),
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "encode_images_per_second": len(images) / encode_seconds,
        "decode_images_per_second": len(images) / decode_seconds,
        "forward_seconds": forward,
        "encode_to_forward": encode_seconds / forward if forward else None,
        "decode_to_forward": decode_seconds / forward if forward else None,
    }
