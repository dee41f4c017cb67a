"""Bits-back compression: the codecs, the latents' buckets against scipy, round trips of both
architectures through the commands, the rate against the coded symbols' information and the
model's -ELBO, and every bad input refused in one line with nothing written."""

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from tests.factory import run_command, tiny_config_for
from tests.test_hierarchy import TINY_HIERARCHY
from tfvae import data
from tfvae.compression import ans, bitsback, compress, container, latents
from tfvae.evaluation import bounds
from tfvae.models import vae as model_lib
from tfvae.training import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """Tiny trained runs: the DCGAN model (16x16, 3 latents) and a hierarchy (8x8, 3 groups)."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, changes in (("dcgan", {}), ("hierarchical", TINY_HIERARCHY)):
        train.train_and_evaluate(tiny_config_for(data_dir, **changes), str(root / name))
        made[name] = root / name
    return made


def _write_images(folder, size, count, seed=0, names=None):
    """Random RGB PNGs [size, size, 3] in `folder`; returns {name: pixels}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = names or [f"face_{i:02d}.png" for i in range(count)]
    written = {}
    for name in names:
        image = rng.integers(0, 256, [size, size, 3], dtype=np.uint8)
        Image.fromarray(image, "RGB").save(folder / name)
        written[name] = image
    return written


def test_codecs_pop_what_they_pushed_and_give_the_seed_back():
    rng = np.random.default_rng(1)
    seed = bytes(rng.integers(0, 256, 37, dtype=np.uint8))
    coder = ans.seeded(seed)
    probabilities = ans.quantised(np.log(rng.random([50, 256])))
    assert np.allclose(probabilities.sum(-1), 1.0)
    popped = ans.Categorical(probabilities).pop(coder)  # bits-back: pops first
    symbols = rng.integers(0, 2**10, 30)
    ans.Uniform(10, 30).push(coder, symbols)
    parts = [rng.integers(0, 256, 4), rng.integers(0, 256, 3)]
    tables = [ans.quantised(np.log(rng.random([n, 256]))) for n in (4, 3)]
    ans.Serial(lambda i: ans.Categorical(tables[i]), 2).push(coder, parts)
    coder = ans.message(ans.words_of(coder))  # as stored
    serial = ans.Serial(lambda i: ans.Categorical(tables[i]), 2)
    for got, want in zip(serial.pop(coder), parts, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ans.Uniform(10, 30).pop(coder), symbols)
    ans.Categorical(probabilities).push(coder, popped)
    assert ans.unseal(coder, len(seed)) == seed


def test_bucket_masses_are_the_posteriors_mass_over_equal_mass_buckets_of_the_prior():
    bits = 6
    prior_loc, prior_scale = np.float32([0.3, -1.0, 0.0]), np.float32([2.0, 0.5, 1.0])
    loc, scale = np.float32([0.5, 3.0, 0.0]), np.float32([0.1, 0.05, 1.0])
    log_probs = latents.posterior_log_probs(prior_loc, prior_scale, loc, scale, bits)
    edges = stats.norm.ppf(np.arange(2**bits + 1) / 2**bits)
    for i in range(3):
        z_edges = prior_loc[i] + prior_scale[i] * edges.astype(np.float64)
        expected = np.diff(stats.norm.cdf(z_edges, loc[i], scale[i]))
        np.testing.assert_allclose(np.exp(log_probs[i]), expected, atol=1e-12)
        assert np.isclose(np.exp(log_probs[i]).sum(), 1.0)
    np.testing.assert_allclose(np.exp(log_probs[2]), 2.0**-bits, rtol=1e-9)  # q = prior
    indices = np.arange(2**bits)[None].repeat(3, 0)
    centres = latents.centres(indices, prior_loc[:, None], prior_scale[:, None], bits)
    mass_below = stats.norm.cdf(centres, prior_loc[:, None], prior_scale[:, None])
    np.testing.assert_allclose(mass_below, (indices + 0.5) / 2**bits, atol=1e-5)


@pytest.mark.parametrize("architecture", ["dcgan", "hierarchical"])
def test_images_come_back_identical_under_their_names(runs, tmp_path, architecture):
    size = 16 if architecture == "dcgan" else 8
    names = ["b.png", "a.png", "portrait 3.png", "c.bmp", "d.png", "e.png", "f.png"]
    written = _write_images(tmp_path / "in", size, 0, names=names)
    source = str(tmp_path / "in")
    if architecture == "hierarchical":  # a zip too
        source = str(tmp_path / "in.zip")
        with zipfile.ZipFile(source, "w") as archive:
            for name in names:
                archive.write(tmp_path / "in" / name, f"faces/{name}")
    run = run_command("compress", f"--model_dir={runs[architecture]}", f"--images={source}",
                      f"--output={tmp_path / 'faces.tfvz'}", "--eval_batch_size=2")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "bits/dim" in run.stdout and "the seed: 1 JPEG XL file" in run.stdout
    header, _ = container.unpack((tmp_path / "faces.tfvz").read_bytes(), "f")
    assert header["names"] == sorted(names) and sum(header["batches"]) == len(names) - 1
    file, out = tmp_path / "faces.tfvz", tmp_path / "out"
    run = run_command(
        "decompress", f"--model_dir={runs[architecture]}", f"--input={file}", f"--output={out}"
    )
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        os.path.splitext(n)[0] + ".png" for n in names
    )
    for name, image in written.items():
        decoded = np.asarray(Image.open(tmp_path / "out" / (os.path.splitext(name)[0] + ".png")))
        np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("architecture", ["dcgan", "hierarchical"])
def test_a_batch_costs_its_symbols_information_less_the_bits_got_back(runs, architecture):
    """Pixels at -log2 P(x | the bucket centres) of the model's own log_prob, B bits a latent
    under the prior, less -log2 Q(bucket) popped: the stack grows by that, within the coder's
    fixed overhead (its 64-bit state) and the 24-bit quantisation of the tables. The images are
    the model's own draws: on pixels it finds improbable the coder's smallest probability,
    2^-24, lifts symbols below it, and the file is shorter than their information."""
    _, model, _ = model_lib.restore(str(runs[architecture]))
    p_x = model.decode(tf.random.stateless_normal([3, model.latent_dim], [4, 5]))
    images = np.round(p_x.sample(seed=[1, 2]).numpy() * 255).astype(np.uint8)
    coder = ans.seeded(bytes(range(256)) * 8)
    before = coder.num_valid_bits()
    bits = 10
    indices = bitsback.encode(coder, model, images, bits)
    walk, posterior_walk, expected = (
        model.walk(n=3),
        model.walk(model.encode(tf.constant(images, tf.float32) / 255.0)),
        0.0,
    )
    for chosen in indices:
        prior_loc, prior_scale, _, _ = walk.next_normals()
        _, _, loc, scale = posterior_walk.next_normals()
        log_q = latents.posterior_log_probs(prior_loc, prior_scale, loc, scale, bits)
        log_q_chosen = np.take_along_axis(log_q, chosen.reshape(-1, 1), 1).sum()
        expected += chosen.size * bits + log_q_chosen / np.log(2)  # B bits in, -log2 Q back
        centre = latents.centres(chosen, prior_loc.numpy(), prior_scale.numpy(), bits)
        walk.push(centre), posterior_walk.push(centre)
    x = tf.constant(images, tf.float32) / 255.0
    expected -= np.sum(walk.likelihood().log_prob(x).numpy()) / np.log(2)
    assert abs((coder.num_valid_bits() - before) - expected) < 64 + 1e-3 * abs(expected)


def test_the_file_costs_about_the_negative_elbo(runs):
    """On 48 of the faces the model was made for, the chain (after the seed) within 3% of the
    model's -ELBO on the same images (K=20 samples of the ELBO per image)."""
    run = str(runs["dcgan"])
    config, model, _ = model_lib.restore(run)
    batch = next(iter(data.load_config_split(config, "validation", 16).batch(16)))
    images = np.concatenate([batch["image"].numpy()] * 3)  # 48 images
    fingerprint = container.fingerprint(os.path.join(run, "config.json"), model)
    names = [f"{i}.png" for i in range(len(images))]
    blob, numbers = compress.compress(model, names, images, fingerprint, batch_size=8)
    assert np.array_equal(compress.decompress(model, blob, fingerprint)[1], images)
    chained = images[numbers["seed_images"] :].astype(np.float32) / 255.0
    elbo = bounds.bounds(model, chained, k=20, chunk_size=20, seed=[0, 1])["elbo"].numpy()
    negative_elbo = -elbo.mean() / (images[0].size * np.log(2))
    assert numbers["chain_bits_per_dim"] == pytest.approx(negative_elbo, rel=0.03)


@pytest.fixture(scope="module")
def compressed(runs, tmp_path_factory):
    """A file of four 16x16 images compressed with the DCGAN run."""
    root = tmp_path_factory.mktemp("compressed")
    _write_images(root / "in", 16, 4)
    run = run_command("compress", f"--model_dir={runs['dcgan']}", f"--images={root / 'in'}",
                      f"--output={root / 'faces.tfvz'}")  # fmt: skip
    assert run.returncode == 0, run.stderr
    return root / "faces.tfvz"


def _changed(data: bytes, how: str) -> bytes:
    import struct
    import zlib

    if how == "version":
        body = data[:4] + struct.pack("<I", 2) + data[8:-4]
        return body + struct.pack("<I", zlib.crc32(body))
    if how == "truncated":
        return data[:-9]
    if how == "corrupted":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
    return b"GIF89a" + data[6:]  # another kind of file


@pytest.mark.parametrize(
    "how,message",
    [
        ("version", "is in format version 2; this tfvae reads version 1."),
        ("truncated", "is truncated or corrupted"),
        ("corrupted", "is truncated or corrupted (its checksum does not match)."),
        ("other", "is not a tfvae compressed file"),
        ("model", "was compressed with another model"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_and_nothing_is_written(
    runs, compressed, tmp_path, how, message
):
    path = tmp_path / "faces.tfvz"
    path.write_bytes(
        compressed.read_bytes() if how == "model" else _changed(compressed.read_bytes(), how)
    )
    model_dir = runs["hierarchical" if how == "model" else "dcgan"]
    run = run_command("decompress", f"--model_dir={model_dir}", f"--input={path}",
                      f"--output={tmp_path / 'out'}")  # fmt: skip
    assert run.returncode == 1 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["faces.tfvz"]  # no folder, no staging left


@pytest.mark.parametrize(
    "case,message",
    [
        ("size", "Image face_00.png is 8x8; this model codes 16x16 RGB images."),
        ("empty", "holds no image files"),
        ("missing", "no such directory or zip file"),
        ("unwritable", "is not writable"),
        ("exists", "which exists; give --overwrite to replace it."),
    ],
)
def test_bad_images_or_output_are_refused_in_one_line_and_nothing_is_written(
    runs, tmp_path, case, message
):
    _write_images(tmp_path / "in", 8 if case == "size" else 16, 0 if case == "empty" else 2)
    (tmp_path / "in").mkdir(exist_ok=True)
    images = tmp_path / ("nothing" if case == "missing" else "in")
    output = tmp_path / "out" / "faces.tfvz"
    (tmp_path / "out").mkdir()
    if case == "unwritable":
        (tmp_path / "out" / "a_file").write_text("")
        output = tmp_path / "out" / "a_file" / "faces.tfvz"
    if case == "exists":
        output.write_bytes(b"keep")
    before = sorted(os.listdir(tmp_path / "out"))
    run = run_command("compress", f"--model_dir={runs['dcgan']}", f"--images={images}",
                      f"--output={output}")  # fmt: skip
    assert run.returncode == 1 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert sorted(os.listdir(tmp_path / "out")) == before
    if case == "exists":
        assert output.read_bytes() == b"keep"
