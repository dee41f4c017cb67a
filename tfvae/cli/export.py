"""Export a trained run as a SavedModel that runs with TensorFlow alone (TF Serving's layout).

  python tools/export.py --model_dir=runs/quickstart          # -> runs/quickstart/export/1/
  saved_model_cli show --dir runs/quickstart/export/1 --all

Rebuilds the model from model_dir/config.json and its latest checkpoint and writes
EXPORT_DIR/<version>/ with the signatures encode, decode, reconstruct (= serving_default),
sample and log_likelihood, plus assets.extra/tfvae_export.json (the model's contract) and
assets.extra/requests/*.json (TF Serving REST request examples). An existing version is never
touched without --overwrite, and a failed export leaves nothing behind.
"""

import json
import os

from tfvae.cli import common
from tfvae.evaluation import DEFAULT_CHUNK_SIZE

FLAG_DEFINITIONS, define = common.flag_definitions()  # parsed afresh by each main
define.string("model_dir", None, "A training run's directory.", required=True)
define.string("export_dir", None, "Parent of the version folders (default MODEL_DIR/export).")
define.string("version", None, "Integer version folder (default: the next free one).")
define.bool("overwrite", False, "Replace an existing version.")
define.integer("max_k", 10_000, "Largest K the log_likelihood signature accepts.", lower_bound=1)
define.integer(
    "chunk_size", DEFAULT_CHUNK_SIZE, "Importance samples decoded at once per image.", lower_bound=1
)
define.string(
    "sampler", "prior", "Where `sample` draws its codes: prior (the model's own), or a sampler "
    "fitted by tfvae-fit-sampler (MODEL_DIR/samplers/NAME; '' also means the prior).",
)  # fmt: skip
define.bool(
    "onnx",
    False,
    "Also write assets.extra/encoder.onnx and decoder.onnx, checked in onnxruntime "
    '(needs pip install -e ".[onnx]").',
)


def _main(FLAGS) -> int | None:
    from tfvae.export import saved_model as export

    path = export.export(
        FLAGS.model_dir,
        FLAGS.export_dir,
        FLAGS.version,
        FLAGS.overwrite,
        FLAGS.max_k,
        FLAGS.chunk_size,
        FLAGS.onnx,
        None if FLAGS.sampler in ("", "prior") else FLAGS.sampler,
    )
    with open(os.path.join(path, "assets.extra", export.METADATA_FILE)) as f:
        metadata = json.load(f)
    print(export.markdown_signature_table(metadata["signatures"]))
    print(f"exported {metadata['checkpoint']} (step {metadata['step']}) to {path}")


main = common.command(
    FLAG_DEFINITIONS, _main, __doc__, reads_run=True, aliases={"max_num_samples": "max_k"}
)


def run() -> None:
    """The `tfvae-export` console script."""
    common.run(main)
