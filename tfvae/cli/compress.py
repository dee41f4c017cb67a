"""Compress a set of images into one file with a trained run's model (bits-back coding with ANS).

  tfvae-compress --model_dir=runs/hierarchical_quick --images=DIR_OR_ZIP --output=faces.tfvz
  tfvae-decompress --model_dir=runs/hierarchical_quick --input=faces.tfvz --output=DIR

The images (every .png, .jpg, .jpeg, .bmp, .gif and .webp of a folder or zip, of the run's
image size) are stored in about the model's negative ELBO (docs/compression.md), the first of
them as JPEG XL files that seed the chain; the file names the model it needs, and decodes to the
exact pixels or is refused. Prints the file's bits/dim beside the input files' and the seed's.
"""

import os
import time

from tfvae.cli import common

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.string("images", None, "A folder or zip of images of the run's size.", required=True)
define.string("output", None, "The compressed file to write (e.g. faces.tfvz).", required=True)
define.integer("eval_batch_size", 16, "Images through the model at once.", lower_bound=1)
common.define_latent_grid_flags(define, "see the docs")
define.bool("overwrite", False, "Replace an existing --output.")


def check_writable(path: str, flag: str, overwrite: bool, directory: bool = False) -> None:
    """One line (UsageError) unless `path` can be written: its folder writable, and nothing
    there to overwrite (without --overwrite; a folder may be empty)."""
    if os.path.exists(path):
        empty_folder = directory and os.path.isdir(path) and not os.listdir(path)
        if os.path.isdir(path) != directory:
            kind = "a folder" if os.path.isdir(path) else "a file"
            raise common.UsageError(f"Flag `--{flag}` is {path!r}: it is {kind}.")
        if not (overwrite or empty_folder):
            raise common.UsageError(
                f"Flag `--{flag}` is {path!r}, which exists; give --overwrite to replace it."
            )
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not (os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)):
        raise common.UsageError(f"Flag `--{flag}` is {path!r}: {parent} is not writable.")


def _main(FLAGS) -> int | None:
    from tqdm import tqdm

    from tfvae.compression import compress, container, latents
    from tfvae.runtime import files

    check_writable(FLAGS.output, "output", FLAGS.overwrite)
    names, images, input_bytes = compress.read_images(FLAGS.images)
    config, vae, _ = common.restore(FLAGS)
    images = compress.check_images(names, images, config.image_size)
    grid = latents.default(FLAGS.latent_bits, FLAGS.latent_grid, FLAGS.coding_prior)
    compress.check_codable(vae, images.shape[1:], grid)
    fingerprint = container.fingerprint(os.path.join(FLAGS.model_dir, "config.json"), vae)
    start = time.perf_counter()
    with tqdm(total=len(images), unit="img", desc="compressing") as bar:
        data, numbers = compress.compress(
            vae, names, images, fingerprint, FLAGS.eval_batch_size, grid, bar.update
        )
    seconds = time.perf_counter() - start
    files.write_atomically(FLAGS.output, data)
    dims = images[0].size
    chain = numbers["chain_bits_per_dim"]
    print(
        f"wrote {FLAGS.output}: {len(images)} images, {numbers['bytes']:,} bytes, "
        f"{numbers['bits_per_dim']:.4f} bits/dim (the input files: "
        f"{8 * input_bytes / (len(images) * dims):.4f}); the seed: {numbers['seed_images']} "
        f"JPEG XL file(s), {numbers['seed_bytes']:,} bytes; the chain: "
        + (f"{chain:.4f} bits/dim on the other images" if chain is not None else "empty")
        + f"; coded in {seconds:.1f} s ({len(images) / seconds:.1f} images/s; tfvae-bpp "
        "--compress gives it beside the model's forward pass)"
    )


main = common.command(FLAG_DEFINITIONS, _main, __doc__, reads_run=True)


def run() -> None:
    """The `tfvae-compress` console script."""
    common.run(main)
