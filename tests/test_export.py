"""SavedModel export: loads without tfvae or TFP, with both loaders, and matches the model."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.factory import run_command, tiny_config_for
from tfvae import config as config_lib
from tfvae.evaluation import bounds, units
from tfvae.export import saved_model as export
from tfvae.models import likelihoods
from tfvae.models import vae as model
from tfvae.samplers import store as samplers
from tfvae.training import train
from tfvae.training.steps import Steps

NUM_SAMPLES, SEED, TEMPERATURE = 20, [1, 2], 0.7  # `sample` is called at T = 0.7
VARIANTS = {  # name -> Config overrides: with TRAINED (below), every upsampling, likelihood and
    # prior at least once
    "nearest_gaussian_vamp": dict(
        upsampling="nearest", likelihood="gaussian", prior="vamp", prior_components=2
    ),
    "bilinear_bernoulli_mog": dict(
        upsampling="bilinear", likelihood="bernoulli", prior="mog", prior_components=3
    ),
    "deconv_fixed_gaussian": dict(likelihood="gaussian", gaussian_scale=0.1),
    "flow_prior_iaf": dict(prior="flow", posterior="iaf", flow_layers=1, flow_width=8),
}
HIERARCHY = dict(  # a two-group hierarchy with the mixture: its own test below
    architecture="hierarchical", latent_groups="4:1,8:1", latent_channels=2, residual_cells=1,
    likelihood="discretized_logistic_mixture", mixture_components=2, width=8,
)  # fmt: skip

# The deconvolution and discretized logistic (the defaults) are trained_bfloat16's, a run of the
# default flags trained two steps with mixed_bfloat16 (its export computes in float32).
TRAINED = "trained_bfloat16"

SAMPLED = {  # exports/sampler_NAME: `sample` from a sampler fitted on the trained run
    "gmm": ["--components=2"],
    "flow": ["--sampler_flow_epochs=1", "--sampler_flow_width=8", "--sampler_flow_layers=2"],
}

# Runs in a fresh interpreter where tfvae and TFP cannot be imported: every signature of every
# export through tf.saved_model.load and through TF1's session loader (TF Serving's path).
CONSUMER = r"""
import json, os, sys
sys.modules["tfvae"] = None
sys.modules["tensorflow_probability"] = None
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry


def inputs_for(name, images, z):
    return {
        "encode": {"images": images}, "reconstruct": {"images": images},
        "serving_default": {"images": images}, "decode": {"z": z},
        "decode_top": {"z": z[:, :%(top)d]},
        "sample": {"count": np.int32(3), "seed": np.array([1, 2], np.int64),
                   "temperature": np.float32(%(temperature)r)},
        "log_likelihood": {"images": images, "k": np.int32(%(k)d),
                           "seed": np.array([1, 2], np.int64)},
    }[name]

def request_tensors(request, signature):
    specs = signature.structured_input_signature[1]
    if "instances" in request:  # row form: stack each named input over the instances
        columns = {k: [row[k] for row in request["instances"]] for k in request["instances"][0]}
    else:
        columns = request["inputs"]
    return {k: tf.constant(np.asarray(v), specs[k].dtype) for k, v in columns.items()}

root = sys.argv[1]
inputs = np.load(os.path.join(root, "inputs.npz"))
images = inputs["images"]
for variant in sorted(os.listdir(os.path.join(root, "exports"))):
    z = inputs["z_hierarchical" if "hierarchical" in variant else "z"]
    path = os.path.join(root, "exports", variant, "1")
    results = {}
    loaded = tf.saved_model.load(path)
    for name, signature in loaded.signatures.items():
        for key, value in signature(**inputs_for(name, images, z)).items():
            results[f"tf2/{name}/{key}"] = value.numpy()
    requests = os.path.join(path, "assets.extra", "requests")
    for file in sorted(os.listdir(requests)):
        with open(os.path.join(requests, file)) as f:
            request = json.load(f)
        signature = loaded.signatures[request["signature_name"]]
        out = signature(**request_tensors(request, signature))
        results[f"request/{file}"] = np.array([len(v) for v in out.values()])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name, signature in meta_graph.signature_def.items():
            if name.startswith("__"):  # the init op, not a signature
                continue
            feed = {signature.inputs[k].name: v for k, v in inputs_for(name, images, z).items()}
            fetch = {k: v.name for k, v in signature.outputs.items()}
            for key, value in session.run(fetch, feed).items():
                results[f"tf1/{name}/{key}"] = value
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node}
    ops |= {n.op for f in graph.library.function for n in f.node_def}
    functions = {f.signature.name for f in graph.library.function}
    unknown = sorted(op for op in ops - functions if op_def_registry.get(op) is None)
    results["unknown_ops"] = np.array(unknown, dtype=object)
    np.savez(os.path.join(root, f"out_{variant}.npz"), **results)
print("consumer ok")
""" % {"k": NUM_SAMPLES, "temperature": TEMPERATURE, "top": 4 * 4 * 2}  # noqa: UP031


def _make_run(directory, base, **overrides):
    """A run directory with config.json and a checkpoint of freshly initialised weights."""
    config = base.replace(**overrides)
    keras.utils.set_random_seed(0)
    steps = Steps(config, tf.distribute.get_strategy())
    for v in steps.model.non_trainable_variables:  # moving statistics away from 0 and 1
        v.assign(v + tf.random.uniform(v.shape, 0.1, 0.5))
    config_lib.save(config, os.path.join(directory, "config.json"))
    tf.train.CheckpointManager(steps.checkpoint, directory, 1).save(checkpoint_number=0)
    return str(directory)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """Run directories of every variant plus one trained with mixed_bfloat16."""
    root = tmp_path_factory.mktemp("runs")
    base = tiny_config_for(data_dir)
    runs = {name: _make_run(root / name, base, **o) for name, o in VARIANTS.items()}
    runs["hierarchical"] = _make_run(root / "hierarchical", base, **HIERARCHY)
    runs[TRAINED] = str(root / TRAINED)
    train.train_and_evaluate(base.replace(mixed_precision="mixed_bfloat16"), runs[TRAINED])
    return runs


@pytest.fixture(scope="module")
def exported(tmp_path_factory, runs):
    """Every run exported, then consumed in a process without tfvae or TFP."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, [4, 16, 16, 3]).astype(np.uint8)
    z = rng.normal(size=[5, 3]).astype(np.float32)
    z_hierarchy = rng.normal(size=[5, 4 * 4 * 2 + 8 * 8 * 2]).astype(np.float32)
    np.savez(root / "inputs.npz", images=images, z=z, z_hierarchical=z_hierarchy)
    for name, run in runs.items():
        export.export(run, export_dir=str(root / "exports" / name))  # -> exports/NAME/1
    fitted = {**{f"sampler_{s}": (TRAINED, s, a) for s, a in SAMPLED.items()},
              "hierarchical_sampler_gaussian": ("hierarchical", "gaussian", [])}  # fmt: skip
    for name, (variant, sampler, args) in fitted.items():  # `sample` from a fitted sampler
        run = runs[variant]
        fit = run_command("fit_sampler", f"--model_dir={run}", f"--sampler={sampler}", *args)
        assert fit.returncode == 0, fit.stderr[-2000:]
        export.export(run, export_dir=str(root / "exports" / name), sampler=sampler)
    consumer = subprocess.run(
        [sys.executable, "-c", CONSUMER, str(root)], capture_output=True, text=True, timeout=300
    )
    assert consumer.returncode == 0, consumer.stderr[-3000:]
    names = [*runs, *fitted]
    outputs = {n: dict(np.load(root / f"out_{n}.npz", allow_pickle=True)) for n in names}
    return root, outputs, images, z


@pytest.mark.parametrize("variant", [TRAINED, *VARIANTS])
def test_signatures_match_the_model_in_both_loaders(runs, exported, variant):
    _, outputs, images, z = exported
    out = outputs[variant]
    config, vae, _ = model.restore(runs[variant])
    x = tf.cast(images, tf.float32) / 255.0
    q = vae.encode(x)
    p = vae.decode(z)
    if config.posterior == "iaf":  # the zero-noise code beside the base Gaussian's moments
        q, code = q.base, {"encode/code": q.code()}
    expected = {
        **(code if config.posterior == "iaf" else {}),
        "encode/loc": q.distribution.mean(),
        "encode/scale": q.distribution.stddev(),
        "decode/pixels": likelihoods.point_estimate(p),
        **{f"decode/{k}": v for k, v in export.likelihood_parameters(p).items()},
    }
    dequantize = likelihoods.is_density(config.likelihood)  # a density: at (v + u) / 256
    estimates = bounds.bounds(vae, x, NUM_SAMPLES, 8, SEED, np.arange(4), 1, dequantize)
    expected["log_likelihood/log_likelihood"] = estimates["log_likelihood"]
    expected["log_likelihood/elbo"] = estimates["elbo"]
    for loader in ("tf2", "tf1"):
        for key, value in expected.items():
            np.testing.assert_allclose(out[f"{loader}/{key}"], value, rtol=1e-5, atol=1e-4)
        levels = {
            "reconstruct/reconstructions": vae.reconstruct(x),
            "decode/images": likelihoods.point_estimate(p),
            "sample/images": vae.sample(z=out[f"{loader}/sample/z"]),
        }
        for key, pixels in levels.items():  # uint8 images within one level
            difference = out[f"{loader}/{key}"].astype(int) - np.round(pixels.numpy() * 255)
            assert np.abs(difference).max() <= 1, key
        np.testing.assert_array_equal(
            out[f"{loader}/serving_default/reconstructions"],
            out[f"{loader}/reconstruct/reconstructions"],
        )
    eps = tf.random.stateless_normal([3, 3], SEED, alg="philox")
    if config.prior == "normal":
        draws = TEMPERATURE * eps
    else:
        draws = vae.prior.sample(3, SEED, TEMPERATURE)
        assert not np.allclose(draws, TEMPERATURE * eps)
    np.testing.assert_allclose(out["tf1/sample/z"], draws, rtol=1e-6, atol=1e-6)  # same seed
    np.testing.assert_array_equal(out["tf1/sample/images"], out["tf2/sample/images"])
    if config.likelihood == "bernoulli":
        assert "tf2/log_likelihood/bits_per_dim" not in out
    else:
        convention = units.convention_for(config.likelihood)
        bits = units.bits_per_dim(-estimates["log_likelihood"].numpy(), 16 * 16 * 3, convention)
        np.testing.assert_allclose(out["tf2/log_likelihood/bits_per_dim"], bits, rtol=1e-5)
    assert list(out["unknown_ops"]) == []  # stock TensorFlow ops only
    requests = [k for k in out if k.startswith("request/")]
    assert len(requests) == 5 and all(out[k].min() >= 1 for k in requests)


@pytest.mark.parametrize("sampler", list(SAMPLED))
def test_sample_draws_from_a_fitted_sampler_with_tensorflow_alone(runs, exported, sampler):
    root, outputs, _, _ = exported
    out = outputs[f"sampler_{sampler}"]
    run = runs[TRAINED]
    _, vae, checkpoint = model.restore(run)
    fitted, info = samplers.load(run, sampler, checkpoint)
    expected = fitted.sample(3, SEED, TEMPERATURE).numpy()  # the same seed in this process
    for loader in ("tf2", "tf1"):
        np.testing.assert_allclose(out[f"{loader}/sample/z"], expected, rtol=1e-5, atol=1e-5)
        pixels = vae.sample(z=expected).numpy()
        difference = out[f"{loader}/sample/images"].astype(int) - np.round(pixels * 255)
        assert np.abs(difference).max() <= 1
    assert not np.allclose(expected, TEMPERATURE * tf.random.stateless_normal([3, 3], SEED))
    assert list(out["unknown_ops"]) == []
    path = os.path.join(root, "exports", f"sampler_{sampler}", "1", "assets.extra")
    with open(os.path.join(path, export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["sample_codes_from"] == sampler and metadata["sampler"] == info


def test_metadata_states_the_contract(exported):
    root, _, _, _ = exported
    path = os.path.join(root, "exports", TRAINED, "1")
    with open(os.path.join(path, "assets.extra", export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["config"]["mixed_precision"] == "mixed_bfloat16"
    assert metadata["step"] == 2 and metadata["checkpoint"] == "ckpt-2"
    assert metadata["max_k"] == export.DEFAULT_MAX_K
    assert set(metadata["signatures"]) == {
        "serving_default", "encode", "decode", "reconstruct", "sample", "log_likelihood"
    }  # fmt: skip
    assert metadata["signatures"]["sample"]["inputs"] == {
        "count": "int32 []", "seed": "int64 [2]", "temperature": "float32 []"
    }  # fmt: skip
    assert "256 pixel values" in metadata["bits_per_dim_convention"]
    assert set(likelihoods.POINT_ESTIMATES) == set(config_lib.LIKELIHOODS)


def test_bad_inputs_fail_naming_the_input(exported):
    root, _, images, _ = exported
    path = os.path.join(root, "exports", TRAINED, "1")
    signatures = tf.saved_model.load(path).signatures
    for bad in (images[:, :8, :8], images[..., :1]):  # wrong size, wrong channel count
        with pytest.raises(tf.errors.InvalidArgumentError, match="input `images` must be uint8"):
            signatures["reconstruct"](images=tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match="uint8"):
        signatures["reconstruct"](images=tf.constant(images, tf.float32))
    seed = tf.constant(SEED, tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"k must be in \[1, "):
        signatures["log_likelihood"](images=images, k=tf.constant(0), seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature must be > 0"):
        signatures["sample"](count=tf.constant(2), seed=seed, temperature=tf.constant(0.0))


def test_refusals_write_nothing(tmp_path, tiny_config):
    config_lib.save(tiny_config, str(tmp_path / "empty" / "config.json"))
    with pytest.raises(ValueError, match="has no checkpoint yet"):
        export.export(str(tmp_path / "empty"))
    assert not (tmp_path / "empty" / "export").exists()
    run = _make_run(tmp_path / "run", tiny_config)
    with pytest.raises(ValueError, match="Flag `--version` is '0'"):
        export.export(run, version=0)
    assert not (tmp_path / "run" / "export").exists()
    first = export.export(run)
    assert first.endswith(os.path.join("export", "1"))
    before = sorted(os.listdir(first))
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        export.export(run, version=1)
    assert sorted(os.listdir(first)) == before
    original = tf.saved_model.save

    def failing_save(*args, **kwargs):
        original(*args, **kwargs)
        raise OSError("disk full")

    tf.saved_model.save = failing_save
    try:
        with pytest.raises(OSError, match="disk full"):
            export.export(run, version=1, overwrite=True)
    finally:
        tf.saved_model.save = original
    assert os.listdir(tmp_path / "run" / "export") == ["1"]  # no staging folder left
    assert sorted(os.listdir(first)) == before
    assert export.export(run, version=1, overwrite=True) == first
    assert export.next_version(str(tmp_path / "run" / "export")) == 2


def test_cli_exports_after_training_and_saved_model_cli_runs_it(tmp_path):
    args = [
        "--image_size=16", "--width=4", "--latent_dim=3", "--k=2", "--batch_size=16",
        "--train_size=32", "--val_size=16", "--epochs=1", "--export",
        f"--data_dir={tmp_path.parent / 'tfvae-data'}", f"--model_dir={tmp_path}",
    ]  # fmt: skip
    run = run_command("train", *args)  # in process; saved_model_cli below is a process
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"exported to {tmp_path / 'export' / '1'}" in run.stdout
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "run", "--dir", str(tmp_path / "export" / "1"), "--tag_set", "serve",
         "--signature_def", "sample", "--input_exprs", "count=4;seed=[1,2];temperature=0.8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "Result for output key images" in shown.stdout


@pytest.mark.parametrize("variant", [TRAINED, *(v for v in VARIANTS if "iaf" not in v)])
def test_onnx_encoder_and_decoder_equal_the_model_in_onnxruntime(runs, tmp_path, variant):
    # Every upsampling and likelihood: the files written next to the SavedModel, run here in
    # onnxruntime on inputs of their own, against the Keras model (not the export's own probe).
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    target = export.export(runs[variant], export_dir=str(tmp_path), onnx=True)
    extra = os.path.join(target, "assets.extra")
    with open(os.path.join(extra, export.METADATA_FILE)) as f:
        metadata = json.load(f)
    assert metadata["onnx"]["files"] == ["encoder.onnx", "decoder.onnx"]
    _, vae, _ = model.restore(runs[variant])
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, [3, 16, 16, 3]).astype(np.uint8)
    z = rng.normal(size=[4, 3]).astype(np.float32)
    q, p = vae.encode(tf.cast(images, tf.float32) / 255.0), vae.decode(z)
    expected = {
        "encoder": {"loc": q.distribution.mean(), "scale": q.distribution.stddev()},
        "decoder": export.likelihood_parameters(p),
    }
    for name, probe in (("encoder", images), ("decoder", z)):
        session = onnxruntime.InferenceSession(
            os.path.join(extra, f"{name}.onnx"), providers=["CPUExecutionProvider"]
        )
        got = dict(
            zip(
                [o.name for o in session.get_outputs()],
                session.run(None, {session.get_inputs()[0].name: probe}),
                strict=True,
            )
        )
        for key, want in expected[name].items():
            np.testing.assert_allclose(got[key], want.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_hierarchy_exports_its_groups_and_runs_with_tensorflow_alone(runs, exported):
    root, outputs, images, _ = exported
    out = outputs["hierarchical"]
    z = np.load(root / "inputs.npz")["z_hierarchical"]
    config, vae, _ = model.restore(runs["hierarchical"])
    x = tf.cast(images, tf.float32) / 255.0
    means = vae.decoder(tf.zeros([4, vae.latent_dim]), vae.encode(x).features)
    p = vae.decode(z)
    estimates = bounds.bounds(vae, x, NUM_SAMPLES, 8, SEED, np.arange(4), 1)
    expected = {
        "encode/code": vae.encode(x).code(),
        "encode/loc": means["loc"],
        "encode/scale": tf.exp(means["log_scale"]),
        "decode/pixels": likelihoods.point_estimate(p),
        "log_likelihood/log_likelihood": estimates["log_likelihood"],
        "log_likelihood/elbo": estimates["elbo"],
        **{f"decode/{k}": v for k, v in export.likelihood_parameters(p).items()},
    }
    for loader in ("tf2", "tf1"):
        for key, value in expected.items():
            np.testing.assert_allclose(out[f"{loader}/{key}"], value, rtol=1e-5, atol=1e-4)
        sampled = vae.sample(z=out[f"{loader}/sample/z"])
        difference = out[f"{loader}/sample/images"].astype(int) - np.round(sampled * 255)
        assert np.abs(difference).max() <= 1
    draws = TEMPERATURE * tf.random.stateless_normal([3, vae.latent_dim], SEED, alg="philox")
    np.testing.assert_allclose(out["tf1/sample/z"], draws, rtol=1e-6, atol=1e-6)
    top = vae.top_dim  # decode_top: the top group given, the groups below at their prior means
    below_at_means = tf.concat([z[:, :top], tf.zeros([len(z), vae.latent_dim - top])], -1)
    for loader in ("tf2", "tf1"):
        np.testing.assert_allclose(
            out[f"{loader}/decode_top/pixels"],
            likelihoods.point_estimate(vae.decode(below_at_means)),
            rtol=1e-5,
            atol=1e-5,
        )
    # A sampler fitted to the top group: its draws first, the prior's below at the same T.
    sampled = outputs["hierarchical_sampler_gaussian"]
    fitted, _ = samplers.load(
        runs["hierarchical"], "gaussian", model.restore(runs["hierarchical"])[2]
    )
    top_draws = fitted.sample(3, SEED, TEMPERATURE)
    assert top_draws.shape == [3, top] == [3, 4 * 4 * 2]
    whole = vae.with_lower_groups(top_draws, SEED, TEMPERATURE)
    np.testing.assert_allclose(sampled["tf1/sample/z"], whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sampled["tf2/sample/z"], whole, rtol=1e-5, atol=1e-5)
    metadata = json.loads(
        (root / "exports" / "hierarchical" / "1" / "assets.extra" / "tfvae_export.json").read_text()
    )
    assert metadata["latent_groups"] == [[4, 4, 2], [8, 8, 2]] and metadata["latent_dim"] == 160
    assert list(out["unknown_ops"]) == []
