"""SavedModel export: a trained VAE as signatures of plain tensors that run with TensorFlow alone.

Layout (TF Serving's): EXPORT_DIR/<integer version>/ holding saved_model.pb, variables/ and
assets.extra/ (tfvae_export.json, the model's contract; requests/*.json, REST request examples).
A version is written into a temporary folder beside it and renamed into place when complete, so
an interrupted export never leaves a half-written version and never touches an existing one.

The exported module holds the plain `tf.Variable`s behind the Keras variables (TF1's session
loader, TF Serving's path, cannot find Keras 3 variables by name), and every signature returns
tensors only, never a TFP distribution, so neither tfvae nor TFP is needed to load it. Pixels
enter as uint8 [0, 255]; log-probabilities come out as float32 nats. Randomness is stateless
(Philox, seed int64 [2]): the same seed gives the same outputs in any process.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import data
from tfvae.evaluation import DEFAULT_CHUNK_SIZE, bounds, units
from tfvae.models import likelihoods, priors
from tfvae.models import vae as model_lib
from tfvae.runtime import files
from tfvae.samplers import store

FORMAT_VERSION = 3  # 3: sample input `temperature`; 2: log_likelihood input `k`, `max_k`
DEFAULT_MAX_K = 10_000  # largest K the log_likelihood signature accepts
METADATA_FILE = "tfvae_export.json"
RNG = "philox: tf.random.stateless_normal(shape, seed, alg='philox'), seed int64 [2]"


def _to_uint8(pixels: tf.Tensor) -> tf.Tensor:
    """float32 [0, 1] -> uint8 [0, 255], rounded to the nearest level."""
    return tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 1.0) * 255.0), tf.uint8)


def _checked(tensor: tf.Tensor, name: str, shape: list[int], dtype: str) -> tf.Tensor:
    """`tensor` after an in-graph check that its non-batch dims are `shape` (error names it).

    A signature call does not check shapes before running the graph, so without this a wrong
    image size would fail deep inside a convolution.
    """
    dims = ", ".join(["N"] + [str(d) for d in shape])
    check = tf.debugging.assert_equal(
        tf.shape(tensor)[1:],
        tf.constant(shape, tf.int32),
        message=f"Signature input `{name}` must be {dtype} [{dims}]; got shape",
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def likelihood_parameters(distribution) -> dict[str, tf.Tensor]:
    """The tensor parameters of p(x|z) (e.g. loc and scale), each float32 [N, H, W, ...].

    Scalar parameters (a fixed Gaussian scale) are broadcast to the shape of the full ones, not
    through TFP's batch_shape_tensor (its BroadcastArgs has no ONNX counterpart).
    """
    pixels = getattr(distribution, "distribution", distribution)  # inside tfd.Independent
    parameters = {
        name: tf.cast(value, tf.float32)
        for name, value in pixels.parameters.items()
        if value is not None and not isinstance(value, (str, bool)) and name != "dtype"
    }
    shape = tf.shape(next(v for v in parameters.values() if v.shape.rank))  # [N, H, W, ...]
    return {k: v if v.shape.rank else tf.broadcast_to(v, shape) for k, v in parameters.items()}


class ExportModule(tf.Module):
    """The signatures of one VAE over its plain TF variables (see the module docstring)."""

    def __init__(self, vae, config, max_k, chunk_size, sampler=None):
        super().__init__(name="tfvae")
        # Only plain variables are tracked; the functions below close over the Keras model.
        self.model_variables = [getattr(v, "value", v) for v in vae.variables]
        self.sampler_variables = list(getattr(sampler, "model_variables", []))
        s, z = config.image_size, vae.latent_dim  # the codes decode takes: Z, or all groups
        images = tf.TensorSpec([None, s, s, 3], tf.uint8, name="images")
        seed = tf.TensorSpec([2], tf.int64, name="seed")
        convention = units.convention_or_none(config.likelihood)
        num_dims = config.num_dims
        chunk_size = bounds.check_run_chunk(config, vae.latent_dim, max_k, 1, chunk_size)

        def unit_images(images):  # uint8 [N, S, S, 3] -> float32 [0, 1], shape checked
            return data.to_unit_interval(_checked(images, "images", [s, s, 3], "uint8"))

        @tf.function(input_signature=[images])
        def encode(images):
            return vae.encode(unit_images(images)).moments()

        def decoded(z):
            p = vae.decode(z)
            pixels = likelihoods.point_estimate(p)
            return {"images": _to_uint8(pixels), "pixels": pixels, **likelihood_parameters(p)}

        @tf.function(input_signature=[tf.TensorSpec([None, z], tf.float32, name="z")])
        def decode(z):
            return decoded(_checked(z, "z", [vae.latent_dim], "float32"))

        @tf.function(input_signature=[images])
        def reconstruct(images):
            return {"reconstructions": _to_uint8(vae.reconstruct(unit_images(images)))}

        @tf.function(input_signature=[tf.TensorSpec([None, vae.top_dim], tf.float32, name="z")])
        def decode_top(z):  # a hierarchy's top group; the groups below at their prior means
            top = _checked(z, "z", [vae.top_dim], "float32")
            return decoded(vae.with_lower_groups(top, temperature=0.0))

        count_spec = tf.TensorSpec([], tf.int32, name="count")
        temperature_spec = tf.TensorSpec([], tf.float32, name="temperature")

        @tf.function(input_signature=[count_spec, seed, temperature_spec])
        def sample(count, seed, temperature):
            check = tf.debugging.Assert(
                temperature > 0, ["temperature must be > 0; got", temperature]
            )
            with tf.control_dependencies([check]):
                temperature = tf.identity(temperature)
            if sampler is None:  # the model's prior, in plain TF ops
                z = vae.prior.sample(count, seed, temperature)
            else:  # a hierarchy's groups below the sampler's top group: the prior's, at T
                top = sampler.sample(count, seed, temperature)
                z = vae.with_lower_groups(top, seed, temperature)
            return {"images": decoded(z)["images"], "z": z}

        @tf.function(input_signature=[images, tf.TensorSpec([], tf.int32, name="k"), seed])
        def log_likelihood(images, k, seed):
            check = tf.debugging.Assert(
                tf.logical_and(k >= 1, k <= max_k),
                [f"k must be in [1, {max_k}]; got", k],
            )
            with tf.control_dependencies([check]):
                x = unit_images(images)
            ids = tf.range(tf.shape(x)[0])
            dequantize = likelihoods.is_density(config.likelihood)  # at (v + u) / 256
            results = bounds.estimate_bounds(vae, x, ids, seed, k, chunk_size, 1, dequantize)
            out = {"log_likelihood": results["log_likelihood"], "elbo": results["elbo"]}
            if convention:
                out["bits_per_dim"] = units.bits_per_dim(
                    -results["log_likelihood"], num_dims, convention
                )
            return out

        self.encode, self.decode, self.reconstruct = encode, decode, reconstruct
        self.sample, self.log_likelihood = sample, log_likelihood
        self.decode_top = decode_top if vae.top_dim < vae.latent_dim else None

    def signatures(self) -> dict:
        """Signature name -> concrete function; serving_default is reconstruct."""
        functions = {
            "encode": self.encode,
            "decode": self.decode,
            "reconstruct": self.reconstruct,
            "sample": self.sample,
            "log_likelihood": self.log_likelihood,
            **({"decode_top": self.decode_top} if self.decode_top is not None else {}),
        }
        concrete = {name: f.get_concrete_function() for name, f in functions.items()}
        return {"serving_default": concrete["reconstruct"], **concrete}


def signature_table(signatures: dict) -> dict:
    """{name: {"inputs": {key: "dtype [shape]"}, "outputs": {...}}} of concrete functions."""

    def describe(spec):
        dims = ",".join("-1" if d is None else str(d) for d in spec.shape.as_list())
        return f"{spec.dtype.name} [{dims}]"

    return {
        name: {
            "inputs": {s.name: describe(s) for s in tf.nest.flatten(f.structured_input_signature)},
            "outputs": {k: describe(v) for k, v in f.structured_outputs.items()},
        }
        for name, f in signatures.items()
    }


def _example_requests(config, latent_dim: int, top_dim: int) -> dict[str, dict]:
    """TF Serving REST request bodies: row ("instances") form where every input is batched,
    columnar ("inputs") where some input is a scalar or a seed."""
    s = config.image_size
    ramp = np.linspace(0, 255, s).round().astype(np.uint8)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 255 - ramp[:, None]), -1)
    images = [image.tolist(), image[::-1].tolist()]  # two [S, S, 3] uint8 images
    z = np.linspace(-1.0, 1.0, latent_dim).round(3)
    rows = {
        "reconstruct": [{"images": i} for i in images],
        "encode": [{"images": i} for i in images],
        "decode": [{"z": z.tolist()}, {"z": (-z).tolist()}],
    }
    if top_dim < latent_dim:  # a hierarchy: its top group alone
        rows["decode_top"] = [{"z": z[:top_dim].tolist()}, {"z": (-z[:top_dim]).tolist()}]
    columns = {
        "sample": {"count": 2, "seed": [1, 2], "temperature": 0.8},
        "log_likelihood": {"images": images, "k": 10, "seed": [1, 2]},
    }
    requests = {n: {"signature_name": n, "instances": r} for n, r in rows.items()}
    return requests | {n: {"signature_name": n, "inputs": c} for n, c in columns.items()}


def next_version(export_dir: str) -> int:
    """One more than the largest integer version folder in export_dir (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if re.fullmatch(r"\d+", n)]
    return max(versions, default=0) + 1


def parse_version(version) -> int | None:
    """A version flag's value as a positive int (None/'' = next free); ValueError otherwise."""
    if version in (None, ""):
        return None
    text = str(version)
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise ValueError(
            f"Flag `--version` is {text!r}; it must be a positive integer (TF Serving loads "
            "integer version folders), or empty for the next free version."
        )
    return int(text)


def _metadata(config, vae, checkpoint, model_dir, table, max_k, chunk_size, sampler_info) -> dict:
    import keras

    metrics_path = os.path.join(model_dir, "metrics.json")
    metrics = files.read_json(metrics_path) if os.path.exists(metrics_path) else None
    convention = units.describe_convention(config.likelihood)
    return {
        "format_version": FORMAT_VERSION,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "tensorflow_probability": tfp.__version__},
        "config": config.to_dict(),
        "checkpoint": os.path.basename(checkpoint),
        "step": int(tf.train.load_variable(checkpoint, "step/.ATTRIBUTES/VARIABLE_VALUE")),
        "metrics": metrics,
        "image_size": config.image_size,
        "latent_dim": vae.latent_dim,
        **({"latent_groups": [list(shape) for shape in vae.decoder.group_shapes()],
            "codes": "each group's prior noise (z_l - mu_p) / sigma_p, flattened [r, r, c] "
                     "top down; sample at temperature T: decode T eps; decode_top: the first "
                     f"group's {vae.top_dim}, the groups below at their prior means"}
           if config.architecture == "hierarchical" else {}),
        "likelihood": config.likelihood,
        "point_estimate": likelihoods.POINT_ESTIMATES[config.likelihood],
        "units": {"images": "uint8 [0, 255], [N, H, W, 3]",
                  "pixels": "float32 [0, 1]", "log_likelihood": "float32 nats per image",
                  "bits_per_dim": "float32 bits per dimension, D = H*W*3"},
        "bits_per_dim_convention": convention,
        "compute_dtype": "float32",
        "rng": RNG,
        "prior": priors.describe(config),
        "posterior": (
            "per group, a diagonal Gaussian relative to its prior" if config.architecture ==
            "hierarchical" else "diagonal Gaussian" if config.posterior == "diagonal" else
            f"inverse autoregressive flow ({config.flow_layers} MADE steps of "
            f"{config.flow_width} units) on a diagonal Gaussian; encode gives its zero-noise code"
        ),  # fmt: skip
        "sample_codes_from": sampler_info["name"] if sampler_info else "prior",
        "sampler": sampler_info,
        "max_k": max_k,
        "log_likelihood_chunk_size": chunk_size,
        "signatures": table,
    }  # fmt: skip


def export(
    model_dir: str,
    export_dir: str | None = None,
    version=None,
    overwrite: bool = False,
    max_k: int = DEFAULT_MAX_K,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    onnx: bool = False,
    sampler: str | None = None,
) -> str:
    """Exports the latest checkpoint of `model_dir` as EXPORT_DIR/<version>/; returns that path.

    Args:
      model_dir: a training run (config.json and a checkpoint).
      export_dir: parent of the version folders (default MODEL_DIR/export).
      version: positive integer, or None for the next free one.
      overwrite: replace an existing version (otherwise it is refused).
      max_k: largest K accepted by the log_likelihood signature.
      chunk_size: importance samples decoded at once per image (bounds memory).
      onnx: also write assets.extra/encoder.onnx and decoder.onnx (the `onnx` extra), each
        checked in onnxruntime against `encode` / `decode`.
      sampler: name of a sampler fitted on the run's newest checkpoint (MODEL_DIR/samplers/NAME)
        that the `sample` signature draws codes from instead of the prior.

    Raises:
      ValueError (one line, nothing written) for a run without a checkpoint, a bad version or
      an existing version without `overwrite`.
    """
    export_dir = export_dir or os.path.join(model_dir, "export")
    version = parse_version(version)
    for name, value in (("max_k", max_k), ("chunk_size", chunk_size)):
        if value < 1:
            raise ValueError(f"Flag `--{name}` is {value}; it must be an integer >= 1.")
    if onnx:
        _onnx_libraries()  # refuse before writing anything
    config, vae, checkpoint = model_lib.restore(model_dir)
    fitted, sampler_info = (None, None) if sampler is None else store.load(
        model_dir, sampler, checkpoint
    )  # fmt: skip
    version = version or next_version(export_dir)
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise ValueError(
            f"{target} exists; pass --overwrite to replace it, or another --version "
            f"(next free: {next_version(export_dir)})."
        )
    module = ExportModule(vae, config, max_k, chunk_size, fitted)
    signatures = module.signatures()
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)  # ignored by TF Serving
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(os.path.join(extra, "requests"))
        table = signature_table(signatures)
        metadata = _metadata(
            config, vae, checkpoint, model_dir, table, max_k, chunk_size, sampler_info
        )
        if onnx:
            metadata["onnx"] = {
                "files": ["encoder.onnx", "decoder.onnx"],
                "largest_difference_from_tensorflow": write_onnx(module, extra),
            }
        files.write_json(os.path.join(extra, METADATA_FILE), metadata)
        for name, request in _example_requests(config, vae.latent_dim, vae.top_dim).items():
            files.write_json(os.path.join(extra, "requests", f"{name}.json"), request)
        files.replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _onnx_libraries():
    """(tf2onnx, onnxruntime), or ValueError naming the extra that provides them."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as missing:
        raise ValueError(
            f"Flag `--onnx` needs tf2onnx and onnxruntime ({missing.name} is missing); "
            'install them with: pip install -e ".[onnx]"'
        ) from None
    return tf2onnx, onnxruntime


def write_onnx(module: ExportModule, directory: str, opset: int = 17) -> dict[str, float]:
    """Writes encoder.onnx (`encode`) and decoder.onnx (`decode`) and proves them in onnxruntime.

    tf2onnx reports success even when an op has no ONNX counterpart, so each file is loaded in
    onnxruntime and run on a probe batch against the TensorFlow function; ValueError if it fails
    to load or differs by more than 1e-4 (one level for uint8 images).

    Returns:
      {"encoder": largest absolute difference, "decoder": ...} on the probe batches.
    """
    tf2onnx, onnxruntime = _onnx_libraries()
    image_spec = module.encode.input_signature[0]
    z_spec = module.decode.input_signature[0]
    rng = np.random.default_rng(0)
    probes = {
        "encoder": (module.encode, rng.integers(0, 256, [2, *image_spec.shape[1:]], np.uint8)),
        "decoder": (module.decode, rng.normal(size=[2, z_spec.shape[1]]).astype(np.float32)),
    }
    differences = {}
    for name, (function, probe) in probes.items():
        path = os.path.join(directory, f"{name}.onnx")
        spec = list(function.input_signature)
        tf2onnx.convert.from_function(function, input_signature=spec, opset=opset, output_path=path)
        try:
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own error types
            raise ValueError(f"{name}.onnx does not load in onnxruntime: {error}") from None
        got = session.run(None, {session.get_inputs()[0].name: probe})
        want = function(probe)
        differences[name] = 0.0
        for output, value in zip(session.get_outputs(), got, strict=True):
            expected = want[output.name].numpy()
            difference = float(np.abs(value.astype(np.float64) - expected.astype(np.float64)).max())
            if difference > (1.0 if expected.dtype == np.uint8 else 1e-4):
                raise ValueError(
                    f"{name}.onnx output {output.name} differs from TensorFlow by "
                    f"{difference:.3g}; not exported."
                )
            if expected.dtype != np.uint8:  # images may differ by one level (rounding)
                differences[name] = max(differences[name], difference)
    return differences


def markdown_signature_table(table: dict) -> str:
    """The signature table as Markdown rows (name | inputs | outputs), for README and reports."""
    lines = ["| signature | inputs | outputs |", "|---|---|---|"]
    for name, io in table.items():
        cells = [", ".join(f"`{k}` {v}" for k, v in io[side].items()) for side in io]
        lines.append(f"| `{name}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
