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
import sys

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "A training run's directory.", required=True)
flags.DEFINE_string("export_dir", None, "Parent of the version folders (default MODEL_DIR/export).")
flags.DEFINE_string("version", None, "Integer version folder (default: the next free one).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_integer("max_num_samples", 10_000, "Largest K the log_likelihood signature accepts.")
flags.DEFINE_integer("chunk_size", 100, "Importance samples decoded at once per image.")
flags.DEFINE_bool(
    "onnx",
    False,
    "Also write assets.extra/encoder.onnx and decoder.onnx, checked in onnxruntime "
    '(needs pip install -e ".[onnx]").',
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tfvae import export

    try:
        path = export.export(
            FLAGS.model_dir,
            FLAGS.export_dir,
            FLAGS.version,
            FLAGS.overwrite,
            FLAGS.max_num_samples,
            FLAGS.chunk_size,
            FLAGS.onnx,
        )
    except ValueError as error:
        sys.exit(f"error: {error}")
    with open(os.path.join(path, "assets.extra", export.METADATA_FILE)) as f:
        metadata = json.load(f)
    print(export.markdown_signature_table(metadata["signatures"]))
    print(f"exported {metadata['checkpoint']} (step {metadata['step']}) to {path}")


if __name__ == "__main__":
    logging.set_verbosity(logging.ERROR)
    app.run(main)
