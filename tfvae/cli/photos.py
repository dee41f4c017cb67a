"""Build a folder of 32x32 patches of real photographs shipped in installed wheels (no network).

  tfvae-photos --output=PHOTOS_DIR
  tfvae-train --flagfile=configs/hierarchical_photos.flags --dataset=folder:PHOTOS_DIR

Cuts scikit-image's, scikit-learn's and matplotlib's sample photographs (whichever are
installed; `pip install -e ".[photos]"` adds scikit-image) into training patches and validation
patches from a band of each photograph that no training patch touches, with the split in
PHOTOS_DIR/list_eval_partition.txt. Prints the photographs used and skipped, the counts, and
PNG, WebP and JPEG XL lossless bits/dim on the validation patches (docs/data.md). The folder is
written whole or not at all; the same packages give the same bytes.
"""

import time

from tfvae.cli import common
from tfvae.cli.compress import check_writable

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("output", None, "The folder of patches to write.", required=True)
define.bool("overwrite", False, "Replace an existing, non-empty --output folder.")
define.integer("stride", 8, "Pixels between training patches (< 32: they overlap).", 1, 32)
define.integer("margin", 8, "Rows between a validation band and any training patch.", 0)
define.bool("baselines", True, "Print the codecs' bits/dim on the validation patches.")


def _main(FLAGS) -> int | None:
    from tfvae.data import photos

    start = time.perf_counter()
    check_writable(FLAGS.output, "output", FLAGS.overwrite, directory=True)
    built = photos.build(
        FLAGS.output, stride=FLAGS.stride, margin=FLAGS.margin, overwrite=FLAGS.overwrite
    )
    for row in built.manifest["photographs"]:
        print(
            f"{row['name']}: {row['source']}, {row['height']}x{row['width']}, validation rows "
            f"{row['validation_rows'][0]}-{row['validation_rows'][1]}: "
            f"{row['train_patches']} train, {row['validation_patches']} validation patches"
        )
    for reason in built.skipped:
        print(f"skipped {reason}")
    print(
        f"wrote {built.manifest['train_patches']} training and "
        f"{built.manifest['validation_patches']} validation patches of 32x32 to {built.path} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if FLAGS.baselines:
        from tfvae.evaluation import codecs

        results = codecs.baselines(built.validation)
        shown = ", ".join(
            f"{codecs.NAMES[c]} {r['bits_per_dim']:.3f} ± {r['bits_per_dim_standard_error']:.3f}"
            for c, r in results.items()
        )
        print(f"codecs on the {len(built.validation)} validation patches (bits/dim): {shown}")


main = common.command(FLAG_DEFINITIONS, _main, __doc__)


def run() -> None:
    """The `tfvae-photos` console script."""
    common.run(main)
