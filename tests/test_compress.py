"""Bits-back compression: the codecs, the latents' buckets against scipy, round trips of both
architectures through the commands, the rate against the coded symbols' information and the
model's -ELBO, and every bad input refused in one line with nothing written."""

import json
import os
import shutil
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
from tfvae.models import likelihoods
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


def test_reversed_buckets_cost_b_bits_and_put_their_low_bits_where_the_next_pop_reads():
    indices = np.arange(2**10)
    reversed_ = latents.reverse_bits(indices, 10)
    assert sorted(reversed_) == list(indices) and latents.reverse_bits(1, 10) == 512
    np.testing.assert_array_equal(latents.reverse_bits(reversed_, 10), indices)
    tail = 2**10 - 2  # 0b1111111110: a latent far out in its prior's upper tail
    for scramble, top_bit in (("none", 1), ("bit_reversed", 0)):
        coder = ans.seeded(bytes(range(64)))
        start = coder.num_valid_bits()
        prior = latents.EqualMass(10, scramble).prior(3)
        prior.push(coder, [tail, 5, 700])  # the first is pushed last: on top
        assert coder.num_valid_bits() - start == 30  # B bits each, scrambled or not
        # the next pop (here a fair bit) reads the top bucket's first bit as pushed
        assert int(ans.Uniform(1, 1).pop(coder)[0]) == top_bit
        ans.Uniform(1, 1).push(coder, [top_bit])
        np.testing.assert_array_equal(prior.pop(coder), [tail, 5, 700])


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


def _grid_information_bits(grid, bins, prior_loc, prior_scale, loc, scale, group=0) -> float:
    """-log2 of the bins' prior masses plus log2 of their posterior masses (scipy, from the
    grid's definition: the coding prior, N(0, 1) or the group's fitted N(a_c, b_c^2) of each
    latent's channel c, over [-R, R] in prior units, at least the coder's 2^-24; q renormalised
    over its window)."""
    bins = np.asarray(bins, np.float64).ravel()
    as64 = lambda t: np.asarray(t, np.float64).ravel()  # noqa: E731
    prior_loc, prior_scale, loc, scale = map(as64, (prior_loc, prior_scale, loc, scale))
    edge = lambda i: (i - grid.middle - 0.5) * grid.width  # noqa: E731  lower edge of bin i
    a, b = 0.0, 1.0
    if isinstance(grid.coding, list):  # channel c of flat latent i: i mod C
        channel = np.arange(len(bins)) % len(grid.coding[group]["loc"])
        a, b = (np.asarray(grid.coding[group][key])[channel] for key in ("loc", "scale"))
    total = stats.norm.cdf(grid.radius, a, b) - stats.norm.cdf(-grid.radius, a, b)
    prior = (stats.norm.cdf(edge(bins + 1), a, b) - stats.norm.cdf(edge(bins), a, b)) / total
    prior = np.maximum(prior, 2.0**-ans.PRECISION_BITS)  # the coder's least probability
    codec = grid.posterior(prior_loc, prior_scale, loc, scale)
    widths = np.empty_like(bins)
    for rows, part in codec.parts:
        widths[rows] = part.model_range
    mean, std = (loc - prior_loc) / prior_scale, scale / prior_scale
    cdf = lambda i: stats.norm.cdf(edge(i), mean, std)  # noqa: E731
    low = codec.low.astype(np.float64)
    posterior = (cdf(bins + 1) - cdf(bins)) / (cdf(low + widths) - cdf(low))
    return float(-np.log2(prior).sum() + np.log2(posterior).sum())


@pytest.mark.parametrize("coding", ["model", "fitted"])
@pytest.mark.parametrize("architecture", ["dcgan", "hierarchical"])
def test_a_batch_costs_its_symbols_information_less_the_bits_got_back(runs, architecture, coding):
    """Pixels at -log2 P(x | the bin centres) of the model's own likelihood (channel by channel,
    checked against its log_prob), each latent's bin at -log2 of its mass under the coding
    prior (N(0, 1), or the Gaussian fitted to other images' posteriors, per channel), less
    -log2 Q(bin) popped (q's mass renormalised over its window): the stack grows by
    that, within the coder's fixed overhead (its 64-bit state) and the 24-bit quantisation of
    the tables, a symbol's probability at least 2^-24 (the images are the model's own draws
    from other codes, so a few pixels are that improbable)."""
    _, model, _ = model_lib.restore(str(runs[architecture]))
    p_x = model.decode(tf.random.stateless_normal([3, model.latent_dim], [4, 5]))
    images = np.round(p_x.sample(seed=[1, 2]).numpy() * 255).astype(np.uint8)
    coder = ans.seeded(bytes(range(256)) * 8)
    before = coder.num_valid_bits()
    grid = latents.Grid(10, coding=coding)
    if coding == "fitted":  # fitted to other images: channels coded under different Gaussians
        others = np.round(model.decode(tf.random.stateless_normal([8, model.latent_dim], [6, 7]))
                          .sample(seed=[3, 4]).numpy() * 255).astype(np.uint8)  # fmt: skip
        grid = grid.fitted(model, others)
    bins = bitsback.encode(coder, model, images, grid)
    walk, posterior_walk, expected = (
        model.walk(n=3),
        model.walk(model.encode(tf.constant(images, tf.float32) / 255.0)),
        0.0,
    )
    for group, chosen in enumerate(bins):
        prior_loc, prior_scale, _, _ = walk.next_normals()
        _, _, loc, scale = posterior_walk.next_normals()
        expected += _grid_information_bits(grid, chosen, prior_loc, prior_scale, loc, scale, group)
        centre = grid.centres(chosen, prior_loc.numpy(), prior_scale.numpy())
        walk.push(centre), posterior_walk.push(centre)
    x, likelihood = tf.constant(images, tf.float32) / 255.0, walk.likelihood()
    level = images.astype(np.float32)
    coded = [  # log P(channel c | channels before it) of each pixel, float64 [3, N, H, W]
        np.take_along_axis(
            likelihoods.channel_log_probs(likelihood, c, level).numpy().astype(np.float64),
            images[..., c, None].astype(np.int64), -1,
        )[..., 0]
        for c in range(3)
    ]  # fmt: skip
    np.testing.assert_allclose(  # the channels' code is the model's own likelihood
        np.sum(coded, (0, 2, 3)), likelihood.log_prob(x).numpy(), rtol=1e-4
    )
    floored = np.maximum(np.array(coded), np.log(2.0**-ans.PRECISION_BITS))
    expected -= floored.sum() / np.log(2)
    assert abs((coder.num_valid_bits() - before) - expected) < 64 + 1e-3 * abs(expected)


@pytest.mark.parametrize("word", [0, 2**32 - 1])
def test_grid_pops_land_within_their_window_whatever_the_bits(word):
    """The stack's top bits all zero or all one (the extremes a previous image's prior codes
    make common): each bin q pops lies in its window, +-WINDOW_SIGMAS of its standard deviations
    around its mean (at most 1/8 and 2 bins wider), never across the grid, and pushing the bins
    back restores the stack."""
    grid = latents.Grid(10)
    rng = np.random.default_rng(0)
    scale = np.float32(10.0 ** rng.uniform(-4, -0.5, 400))  # windows inside the grid
    loc = np.float32(rng.normal(0, 1.5, 400))
    prior_loc, prior_scale = (
        np.float32(rng.normal(0, 0.5, 400)),
        np.float32(rng.uniform(0.5, 2, 400)),
    )
    words = np.full(200, word, np.uint32)
    words[-1] |= 1  # the top word of a stack is never zero; its low bits stay extreme
    coder = ans.message(words)
    codec = grid.posterior(prior_loc, prior_scale, loc, scale)
    bins = codec.pop(coder)
    offset = np.abs(bins - grid.middle - (loc - prior_loc) / prior_scale / grid.width)  # bins
    std = scale / prior_scale / grid.width  # q's standard deviation in bins
    assert np.all(offset <= 1.125 * latents.WINDOW_SIGMAS * std + 2.0)  # a window's widest
    codec.push(coder, bins)
    np.testing.assert_array_equal(ans.words_of(coder), words)


@pytest.mark.parametrize("architecture", ["dcgan", "hierarchical"])
def test_the_fitted_coding_prior_is_the_aggregate_posteriors_gaussian(runs, architecture):
    """Per group and channel, the mean and standard deviation of t = (z - m_p) / s_p over the
    images' posteriors (numpy from the top group's q: the groups below depend on the draws
    above, so they are checked for their channels only), and the saving equal to the sum over
    latents of E_q[log N(t; a_c, b_c^2) - log N(t; 0, 1)] computed with scipy."""
    config, model, _ = model_lib.restore(str(runs[architecture]))
    batch = next(iter(data.load_config_split(config, "validation", 24).batch(24)))
    images = batch["image"].numpy()
    coding, saving = latents.fit_coding(model, images, batch_size=10)
    assert [len(g["loc"]) for g in coding] == [s[-1] for s in model.group_shapes()]
    _, prior_scale, loc, scale = (
        t.numpy().astype(np.float64) for t in bitsback.posterior_walk(model, images).next_normals()
    )
    prior_loc = bitsback.posterior_walk(model, images).next_normals()[0].numpy()
    channels = model.group_shapes()[0][-1]
    t_loc = ((loc - prior_loc) / prior_scale).reshape(len(images), -1, channels)
    t_scale = (scale / prior_scale).reshape(len(images), -1, channels)
    mean = t_loc.mean((0, 1))
    std = np.sqrt((t_loc**2 + t_scale**2).mean((0, 1)) - mean**2)
    np.testing.assert_allclose(coding[0]["loc"], mean, atol=1e-4)
    np.testing.assert_allclose(coding[0]["scale"], np.maximum(std, 0.01), atol=1e-4)
    if len(coding) == 1:
        a, b = np.array(coding[0]["loc"]), np.array(coding[0]["scale"])
        expected_log = lambda a, b: (  # noqa: E731  E_q log N(t; a, b^2), per latent
            stats.norm.logpdf(t_loc, a, b) - t_scale**2 / (2 * b**2)
        )
        expected = (expected_log(a, b) - expected_log(0.0, 1.0)).sum((1, 2)).mean()
        assert saving == pytest.approx(expected, rel=1e-4, abs=1e-3)
        assert saving >= 0  # a Gaussian fitted to the aggregate codes it at least as well


def test_a_fitted_coding_prior_codes_each_latent_under_its_channels_gaussian():
    """Latents [N, positions x channels] flattened channels last: pushing bins drawn from each
    channel's Gaussian grows the stack by the sum of -log2 of their masses under that channel's
    N(a_c, b_c^2) (scipy), within the coder's overhead; a latent under another channel's
    Gaussian would cost hundreds of bits more."""
    coding = [{"loc": [3.0, -2.0, 0.0], "scale": [0.5, 2.0, 1.0]}]
    grid = latents.Grid(10, coding=coding)
    rng = np.random.default_rng(0)
    loc, scale = np.array(coding[0]["loc"]), np.array(coding[0]["scale"])
    t = rng.normal(np.tile(loc, [40, 5]), np.tile(scale, [40, 5]))  # [N=40, 5 positions x 3]
    bins = np.clip(np.rint(t / grid.width + grid.middle), 0, grid.size - 1).astype(np.int64)
    coder = ans.seeded(bytes(64))
    before = coder.num_valid_bits()
    grid.prior(bins.size, 0).push(coder, bins.ravel())
    a, b = np.tile(loc, [40, 5]), np.tile(scale, [40, 5])
    edge = lambda i: (i - grid.middle - 0.5) * grid.width  # noqa: E731  lower edge of bin i
    total = stats.norm.cdf(grid.radius, a, b) - stats.norm.cdf(-grid.radius, a, b)
    mass = (stats.norm.cdf(edge(bins + 1), a, b) - stats.norm.cdf(edge(bins), a, b)) / total
    expected = -np.log2(np.maximum(mass, 2.0**-ans.PRECISION_BITS)).sum()
    assert abs((coder.num_valid_bits() - before) - expected) < 64 + 1e-3 * expected
    np.testing.assert_array_equal(grid.prior(bins.size, 0).pop(coder), bins.ravel())


def test_a_file_from_before_the_coding_prior_decodes_under_the_models_prior(runs):
    """A header without "coding" (files written before it existed) is the model's N(0, 1)."""
    run = str(runs["dcgan"])
    _, model, _ = model_lib.restore(run)
    images = _split_images(run, 6)
    fingerprint = container.fingerprint(os.path.join(run, "config.json"), model)
    names = [f"{i}.png" for i in range(len(images))]
    grid = latents.Grid(10, coding="model")
    blob, _ = compress.compress(model, names, images, fingerprint, 4, grid)
    header, words = container.unpack(blob, "the file")
    assert header["discretisation"].pop("coding") == "model"
    old = container.pack(header, words)
    assert np.array_equal(compress.decompress(model, old, fingerprint)[1], images)


def test_a_coding_prior_must_be_known():
    with pytest.raises(ValueError, match="coding prior wide; accepted"):
        latents.Grid(10, coding="wide")
    described = latents.Grid(10, coding=[{"loc": [0.5], "scale": [2.0]}]).describe()
    assert latents.from_description(json.loads(json.dumps(described))).coding == described["coding"]


def test_the_file_costs_about_the_negative_elbo(runs):
    """On 48 of the faces the model was made for, the chain (after the seed) within 3% of the
    model's -ELBO on the same images (K=20 samples of the ELBO per image) less what the coding
    prior fitted to them saves."""
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
    saving = numbers["coding_prior_saving_bits_per_dim"]
    assert saving >= 0
    assert numbers["chain_bits_per_dim"] == pytest.approx(negative_elbo - saving, rel=0.03)


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
    if how.startswith("coding_") or how == "bits":  # a well-formed file, a bad discretisation
        header, words = container.unpack(data, "the file")
        described = header["discretisation"]
        if how == "bits":
            described["bits"] = 0
        elif how == "coding_groups":
            described["coding"].append(described["coding"][0])
        elif how == "coding_scale":
            described["coding"][0]["scale"][0] = 0.0
        else:  # "coding_fitted": the wish, not the numbers
            described["coding"] = "fitted"
        return container.pack(header, words)
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
        *[
            (how, "is corrupted (its latent discretisation is malformed).")
            for how in ("bits", "coding_groups", "coding_scale", "coding_fitted")
        ],
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


def _split_images(run, count: int) -> np.ndarray:
    config, _, _ = model_lib.restore(str(run))
    batch = next(iter(data.load_config_split(config, "validation", count).batch(count)))
    return batch["image"].numpy()


def test_bpp_compress_reports_the_file_it_wrote_and_decoded(runs, tmp_path):
    """`tfvae-bpp --compress`: the file's bits/dim is 8 x its bytes / (N D) of the file on disk,
    the seed's share is its JPEG XL bytes', the pixels it decoded are the images evaluated, and
    the file decodes with tfvae-decompress to those images."""
    run = tmp_path / "run"
    shutil.copytree(runs["dcgan"], run)
    result = run_command("bpp", f"--model_dir={run}", "--k=2", "--num_images=8",
                         "--eval_batch_size=4", "--compress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    compressed = metrics["compressed"]
    size = os.path.getsize(compressed["file"])
    dims = 8 * 16 * 16 * 3
    assert compressed["file"] == str(run / "compressed" / "validation_8.tfvz")
    assert compressed["bytes"] == size and compressed["bits_per_dim"] == 8 * size / dims
    assert compressed["seed_bits_per_dim"] == 8 * compressed["seed_bytes"] / dims
    images = _split_images(run, 8)
    assert compressed["round_trip"] == "identical"
    assert compressed["decoded_pixels_sha256"] == container.pixels_sha256(images)
    elbo_bits = -metrics["elbo_nats"] / (dims / 8 * np.log(2))
    assert compressed["negative_elbo_bits_per_dim"] == pytest.approx(elbo_bits, rel=1e-9)
    assert compressed["encode_to_forward"] > 0 and compressed["decode_images_per_second"] > 0
    assert "bits-back file" in result.stdout and "the file (" in result.stdout
    out = tmp_path / "out"
    back = run_command("decompress", f"--model_dir={run}", f"--input={compressed['file']}",
                       f"--output={out}")  # fmt: skip
    assert back.returncode == 0, back.stderr
    for i, image in enumerate(images):
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / f"validation_{i:06d}.png")), image
        )


def test_bpp_compress_refuses_a_file_that_does_not_decode_to_its_images(
    runs, tmp_path, monkeypatch
):
    """A decoder giving other pixels (one changed): one line, exit 1, the file removed."""
    run = tmp_path / "run"
    shutil.copytree(runs["dcgan"], run)
    decompress = compress.decompress

    def one_pixel_off(*args, **kwargs):
        names, images = decompress(*args, **kwargs)
        images = images.copy()
        images[-1, 0, 0, 0] ^= 1
        return names, images

    monkeypatch.setattr(compress, "decompress", one_pixel_off)
    result = run_command("bpp", f"--model_dir={run}", "--k=2", "--num_images=4", "--compress",
                         "--nocodecs")  # fmt: skip
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the progress bars
    assert "did not decode to the images it was made of" in last
    assert result.stderr.count("error") == 1, result.stderr
    assert os.listdir(run / "compressed") == []


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"prior": "mog"}, "needs the standard normal prior"),
        ({"prior": "vamp"}, "needs the standard normal prior"),
        ({"prior": "flow"}, "needs the standard normal prior"),
        ({"posterior": "iaf"}, "needs a diagonal Gaussian posterior"),
        ({"likelihood": "bernoulli"}, "only the discrete likelihoods over 256 levels"),
        ({"likelihood": "gaussian"}, "only the discrete likelihoods over 256 levels"),
        ({**TINY_HIERARCHY, "likelihood": "gaussian"}, "only the discrete likelihoods"),
    ],
)
def test_a_model_the_coder_cannot_code_is_refused_in_one_line(data_dir, changes, message):
    config = tiny_config_for(data_dir, **changes)
    model = model_lib.build(config)
    size = config.image_size
    with pytest.raises(ValueError, match=message) as refused:
        compress.check_codable(model, [size, size, 3])
    assert "\n" not in str(refused.value)


def test_a_learned_prior_is_refused_before_anything_is_written(data_dir, tmp_path):
    """tfvae-compress and tfvae-bpp --compress on a run with a mixture prior: one line each,
    exit 1, no file, no metrics (bpp refuses before its evaluation)."""
    run = tmp_path / "mog"
    train.train_and_evaluate(tiny_config_for(data_dir, prior="mog", train_size=16), str(run))
    _write_images(tmp_path / "in", 16, 3)
    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "faces.tfvz"
    for command, args in (
        ("compress", [f"--images={tmp_path / 'in'}", f"--output={output}"]),
        ("bpp", ["--k=2", "--num_images=4", "--compress"]),
    ):
        result = run_command(command, f"--model_dir={run}", *args)
        assert result.returncode == 1 and "standard normal prior" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert os.listdir(tmp_path / "out") == []
    assert not (run / "compressed").exists() and not (run / "metrics.json").exists()


@pytest.mark.parametrize(
    "case,message", [("unwritable", "is not writable"), ("exists", "which exists; give")]
)
def test_decompress_refuses_an_output_it_cannot_write_and_keeps_what_is_there(
    runs, compressed, tmp_path, case, message
):
    output = tmp_path / "out"
    if case == "unwritable":
        (tmp_path / "a_file").write_text("")
        output = tmp_path / "a_file" / "out"
    else:
        output.mkdir()
        (output / "keep.png").write_bytes(b"keep")
    before = sorted(os.listdir(tmp_path))
    run = run_command("decompress", f"--model_dir={runs['dcgan']}", f"--input={compressed}",
                      f"--output={output}")  # fmt: skip
    assert run.returncode == 1 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert sorted(os.listdir(tmp_path)) == before
    if case == "exists":
        assert (output / "keep.png").read_bytes() == b"keep"
