"""The compressed file: one self-describing file for a set of images.

  magic b"TFVZ" | format version, uint32 | header length L, uint32 | header, L bytes of
  zlib-compressed UTF-8 JSON | the ANS stack's words, uint32 each | CRC-32 of everything before
  it, uint32

(integers little endian). The header names what a decoder must match and what it recovers:
the model's fingerprint (`fingerprint`), the image shape and count, the names in order, the
discretisation, the batches, the seed and a SHA-256 of the pixels, which the decoder checks, so
a file decodes to the exact pixels or is refused.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np

MAGIC = b"TFVZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sII")  # magic, version, header length
_CRC = struct.Struct("<I")


def pack(header: dict, words) -> bytes:
    """The file's bytes of a header (JSON-serialisable) and the words uint32 [W]."""
    text = zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text
    body += np.asarray(words, "<u4").tobytes()
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes, name: str) -> tuple[dict, np.ndarray]:
    """(header, words uint32 [W]) of a file's bytes; ValueError (one line naming `name`) for
    another kind of file, another format version, or a truncated or corrupted one."""
    if len(data) < _PREFIX.size or data[:4] != MAGIC:
        raise ValueError(f"{name} is not a tfvae compressed file (no {MAGIC.decode()} magic).")
    _, version, length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name} is in format version {version}; this tfvae reads version {FORMAT_VERSION}."
        )
    end = _PREFIX.size + length
    words_bytes = len(data) - end - _CRC.size
    if words_bytes < 0 or words_bytes % 4:
        raise ValueError(f"{name} is truncated or corrupted (its length does not add up).")
    if _CRC.unpack_from(data, len(data) - _CRC.size)[0] != zlib.crc32(data[: -_CRC.size]):
        raise ValueError(f"{name} is truncated or corrupted (its checksum does not match).")
    try:
        header = json.loads(zlib.decompress(data[_PREFIX.size : end]))
    except (ValueError, zlib.error):
        raise ValueError(f"{name} is corrupted (its header is not JSON).") from None
    return header, np.frombuffer(data[end : end + words_bytes], "<u4").astype(np.uint32)


def fingerprint(config_path: str, model) -> dict:
    """What identifies a model: SHA-256 of its config.json and of its weights (every variable's
    shape, dtype and values, in the model's order; not the names, which Keras numbers per
    process)."""
    with open(config_path, "rb") as f:
        config_sha = hashlib.sha256(f.read()).hexdigest()
    weights = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(variable.numpy())
        weights.update(f"{value.shape}:{value.dtype};".encode())
        weights.update(value.tobytes())
    return {"config_sha256": config_sha, "weights_sha256": weights.hexdigest()}


def pixels_sha256(images) -> str:
    """SHA-256 of uint8 images [N, H, W, C] in order."""
    return hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes()).hexdigest()
