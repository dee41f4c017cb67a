"""Decompress a file of `tfvae-compress` into one PNG per image, under its original name.

  tfvae-decompress --model_dir=runs/hierarchical_quick --input=faces.tfvz --output=DIR

Needs the run that wrote the file (its config.json and weights are checked against the file's
header); a file of another model, another format version, a truncated or corrupted one, is
refused in one line and nothing is written. The folder is written whole or not at all.
"""

import os
import shutil
import tempfile
import time

from tfvae.cli import common
from tfvae.cli.compress import check_writable

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "The training run the file was compressed with.", required=True)
define.string("input", None, "A file written by tfvae-compress.", required=True)
define.string("output", None, "The folder to write the PNG images to.", required=True)
define.bool("overwrite", False, "Replace an existing, non-empty --output folder.")


def _write_pngs(names, images, output: str) -> None:
    """The images as NAME_STEM.png in a folder staged beside `output` and renamed into place."""
    from PIL import Image

    from tfvae.runtime import files

    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", dir=parent)
    try:
        for name, image in zip(names, images, strict=True):
            path = os.path.join(staging, os.path.splitext(name)[0] + ".png")
            Image.fromarray(image, "RGB").save(path, format="PNG")
        files.replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _main(FLAGS) -> int | None:
    from tqdm import tqdm

    from tfvae.compression import compress, container

    check_writable(FLAGS.output, "output", FLAGS.overwrite, directory=True)
    try:
        with open(FLAGS.input, "rb") as f:
            data = f.read()
    except OSError as error:
        raise common.UsageError(f"Flag `--input` is {FLAGS.input!r}: {error.strerror}.") from None
    header, _ = container.unpack(data, FLAGS.input)  # refused before the model is built
    _, vae, _ = common.restore(FLAGS)
    fingerprint = container.fingerprint(os.path.join(FLAGS.model_dir, "config.json"), vae)
    compress.check_header(header, fingerprint, FLAGS.input)
    compress.parse_header(vae, header, FLAGS.input)  # refused before the progress bar
    start = time.perf_counter()
    with tqdm(total=header.get("count"), unit="img", desc="decompressing") as bar:
        names, images = compress.decompress(vae, data, fingerprint, FLAGS.input, bar.update)
    seconds = time.perf_counter() - start
    _write_pngs(names, images, FLAGS.output)
    bits = 8 * len(data) / images.size
    print(
        f"wrote {len(images)} PNG images to {FLAGS.output} from {FLAGS.input} "
        f"({len(data):,} bytes, {bits:.4f} bits/dim); decoded in {seconds:.1f} s "
        f"({len(images) / seconds:.1f} images/s)"
    )


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True)


def run() -> None:
    """The `tfvae-decompress` console script."""
    common.run(main)
