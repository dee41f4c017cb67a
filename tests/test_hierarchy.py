"""The hierarchical VAE: exact log p(x) on a linear-Gaussian hierarchy, its groups' prior and
KL terms, the estimator's independence of batching and chunking, and its training and tools."""

import dataclasses
import json
import math
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests import linear_hierarchy
from tests.factory import run_command, scalar_events, tiny_config_for
from tfvae import config as config_lib
from tfvae import data
from tfvae.evaluation import bounds
from tfvae.models import likelihoods
from tfvae.models import vae as model_lib
from tfvae.samplers import store
from tfvae.training import train

tfd = tfp.distributions
REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_HIERARCHY = dict(  # 8x8, groups at 2x2 and 4x4 (two): a fraction of a second a step
    architecture="hierarchical", image_size=8, width=8, latent_groups="2:1,4:2",
    latent_channels=2, residual_cells=1, likelihood="discretized_logistic_mixture",
    mixture_components=2, k=2,
)  # fmt: skip


@pytest.fixture
def tiny_hierarchy(data_dir):
    return tiny_config_for(data_dir, **TINY_HIERARCHY)


@pytest.mark.parametrize("num_samples", [1, 40])
def test_exact_log_px_of_a_linear_gaussian_hierarchy_with_its_exact_posterior(num_samples):
    model, x, exact_log_px = linear_hierarchy.make()
    estimate = bounds.log_likelihood(model, x, num_samples, chunk_size=16, seed=[1, 2])
    assert estimate.dtype == tf.float32
    np.testing.assert_allclose(estimate, exact_log_px(x), rtol=1e-5, atol=1e-4)


def test_a_poor_hierarchical_posterior_converges_to_log_px_within_standard_errors():
    model, x, exact_log_px = linear_hierarchy.make(mean_shift=0.8, std_scale=1.5)
    exact = exact_log_px(x)
    small = bounds.bounds(model, x, 10, chunk_size=10, seed=[3, 3])
    gaps = np.array(
        [exact - bounds.log_likelihood(model, x, 2000, 500, seed=[r, 9]).numpy() for r in range(5)]
    )  # [5, B]
    standard_error = gaps.std(0, ddof=1) / math.sqrt(len(gaps)) + 1e-3
    assert np.all(np.abs(gaps.mean(0)) < 4 * standard_error + 0.01)
    assert np.all(exact - small["elbo"].numpy() > 0.1)  # the posterior is poor: the ELBO is not
    assert np.all(exact - small["elbo"].numpy() > 5 * np.abs(gaps.mean(0)))


def _tiny_model(config, seed=0):
    keras.utils.set_random_seed(seed)
    model = model_lib.build(config)
    # Random prior cells (they start at zero, the prior at N(0, I)) so every group's prior
    # depends on the groups above it.
    rng = np.random.default_rng(seed)
    for variable in model.decoder.trainable_variables:
        if not np.any(variable.numpy()):
            variable.assign(rng.normal(0, 0.3, variable.shape).astype(np.float32))
    return model


def test_the_groups_kl_terms_sum_to_the_log_weights_and_each_group_sees_only_those_above(
    tiny_hierarchy,
):
    model = _tiny_model(tiny_hierarchy)
    x = tf.random.stateless_uniform([3, 8, 8, 3], [0, 1])
    terms = model.log_weight_terms(x, 4, seed=[5, 6])
    assert terms["kl_groups"].shape == (4, 3, 3)  # [K, B, groups]
    np.testing.assert_allclose(
        tf.reduce_sum(terms["kl_groups"], -1), terms["log_qz_x"] - terms["log_pz"], atol=2e-3
    )
    log_w = model.log_weights(x, 4, seed=[5, 6])
    np.testing.assert_allclose(
        log_w, terms["log_px_z"] + terms["log_pz"] - terms["log_qz_x"], rtol=1e-6
    )
    # Changing the noise of group l changes the prior terms of groups >= l only.
    sizes = [h * w * c for h, w, c in model.decoder.group_shapes()]  # [8, 32, 32]
    noise = tf.random.stateless_normal([5, sum(sizes)], [1, 1])
    base = model.decoder(noise)["log_p"].numpy()  # [5, 3]
    for group, start in enumerate(np.cumsum([0] + sizes[:-1])):
        changed = noise.numpy()
        changed[:, start : start + sizes[group]] += 0.5
        moved = model.decoder(tf.constant(changed))["log_p"].numpy()
        np.testing.assert_array_equal(moved[:, :group], base[:, :group])
        assert np.all(moved[:, group:] != base[:, group:])


def test_walking_the_groups_top_down_gives_the_conditionals_of_the_log_weights(tiny_hierarchy):
    """The walk a bits-back coder takes: group by group, the prior p(z_l|z_<l) and posterior
    q(z_l|x, z_<l) given the groups pushed so far. Pushing the posterior draws of one noise
    reproduces the model's own log p(z), log q(z|x) and log p(x|z) of that noise; without
    images the walk's priors are the same distributions at the same z."""
    model = _tiny_model(tiny_hierarchy)
    x = tf.random.stateless_uniform([3, 8, 8, 3], [0, 1])
    q = model.encode(x)
    noise = tf.random.stateless_normal([1, 3, model.latent_dim], [2, 3])
    terms = model.terms_from_noise(x, q, noise)
    walk, prior_walk = model.walk(q), model.walk(n=3)
    log_p, log_q, starts = 0.0, 0.0, [start for start, _ in model.group_slices()]
    for start, size in zip(starts, model.group_sizes(), strict=True):
        prior, posterior = walk.next_group()
        assert prior.event_shape == [size] and posterior.batch_shape == [3]
        z = posterior.mean() + posterior.stddev() * noise[0, :, start : start + size]
        log_p += prior.log_prob(z)
        log_q += posterior.log_prob(z)
        unconditioned, none = prior_walk.next_group()
        assert none is None
        np.testing.assert_allclose(unconditioned.log_prob(z), prior.log_prob(z), rtol=1e-6)
        walk.push(z), prior_walk.push(z)
    np.testing.assert_allclose(log_p, terms["log_pz"][0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(log_q, terms["log_qz_x"][0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(walk.likelihood().log_prob(x), terms["log_px_z"][0], rtol=1e-5)
    np.testing.assert_allclose(prior_walk.likelihood().log_prob(x), terms["log_px_z"][0], rtol=1e-5)


def test_the_one_group_walk_is_the_prior_the_posterior_and_the_decoder(data_dir):
    keras.utils.set_random_seed(0)
    vae = model_lib.build(tiny_config_for(data_dir, prior="mog"))
    x = tf.random.stateless_uniform([2, 16, 16, 3], [0, 1])
    q = vae.encode(x)
    noise = tf.random.stateless_normal([1, 2, vae.latent_dim], [4, 4])
    terms = vae.terms_from_noise(x, q, noise)
    walk = vae.walk(q)
    prior, posterior = walk.next_group()
    z = posterior.draw(noise)[0][0]
    walk.push(z)
    np.testing.assert_allclose(prior.log_prob(z), terms["log_pz"][0], rtol=1e-6)
    np.testing.assert_allclose(posterior.log_prob(z), terms["log_qz_x"][0], rtol=1e-6)
    np.testing.assert_allclose(walk.likelihood().log_prob(x), terms["log_px_z"][0], rtol=1e-6)


def test_each_groups_prior_draws_match_its_log_density(tiny_hierarchy):
    """Given one draw of the groups above, group l's draws z = loc + scale eps have the
    log-density the model scores (TFP's Normal as the reference), and the mean of that
    log-density over the draws is minus the Gaussian's entropy (within 5 standard errors)."""
    model = _tiny_model(tiny_hierarchy)
    sizes = [h * w * c for h, w, c in model.decoder.group_shapes()]
    above = tf.random.stateless_normal([1, sum(sizes)], [2, 2])
    draws = 4000
    for group, start in enumerate(np.cumsum([0] + sizes[:-1])):
        eps = tf.random.stateless_normal([draws, sizes[group]], [3, group])
        noise = tf.concat(
            [tf.tile(above[:, :start], [draws, 1]), eps,
             tf.zeros([draws, sum(sizes) - start - sizes[group]])], axis=1,
        )  # fmt: skip
        out = model.decoder(noise)
        window = slice(start, start + sizes[group])
        z, loc, log_scale = (out[k][:, window] for k in ("z", "loc", "log_scale"))
        np.testing.assert_allclose(loc - loc[:1], 0, atol=1e-5)  # the groups above are fixed
        log_p = out["log_p"][:, group]
        reference = tf.reduce_sum(tfd.Normal(loc, tf.exp(log_scale)).log_prob(z), -1)
        np.testing.assert_allclose(log_p, reference, rtol=1e-5, atol=1e-3)
        entropy = tf.reduce_sum(0.5 * math.log(2 * math.pi * math.e) + log_scale[0])
        error = np.std(log_p) / math.sqrt(draws)
        assert abs(np.mean(log_p) + entropy) < 5 * error
        assert np.var(log_p) == pytest.approx(sizes[group] / 2, rel=0.1)  # chi-square / 4


def test_the_estimate_does_not_depend_on_batching_or_chunking(tiny_hierarchy):
    model = _tiny_model(tiny_hierarchy)
    x = tf.random.stateless_uniform([6, 8, 8, 3], [0, 2])
    x = tf.round(x * 255) / 255
    ids = np.arange(6) + 40
    whole = bounds.bounds(model, x, 24, chunk_size=24, seed=[4, 5], example_ids=ids)
    chunked = bounds.bounds(model, x, 24, chunk_size=7, seed=[4, 5], example_ids=ids)
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-5)
    halves = [
        bounds.log_likelihood(model, x[i : i + 3], 24, 24, [4, 5], ids[i : i + 3]) for i in (0, 3)
    ]
    np.testing.assert_allclose(tf.concat(halves, 0), whole["log_likelihood"], rtol=1e-5)
    assert np.all(whole["elbo"] <= whole["log_likelihood"])


def test_prior_samples_at_a_temperature_scale_every_groups_noise(tiny_hierarchy):
    model = _tiny_model(tiny_hierarchy)
    noise = tf.random.stateless_normal([4, model.latent_dim], [7, 7])
    cold = model.decoder(0.5 * noise)
    standardized = (cold["z"] - cold["loc"]) / tf.exp(cold["log_scale"])
    np.testing.assert_allclose(standardized, 0.5 * noise, atol=1e-4)
    images = model.sample(4, seed=[1, 2], temperature=0.5)
    assert images.shape == (4, 8, 8, 3)
    levels = images.numpy() * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # on the pixel grid


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(latent_groups="8:1"), "`--latent_groups` is '8:1' for --image_size=8"),
        (dict(latent_groups="4:1,2:1"), "`--latent_groups` is '4:1,2:1'"),
        (dict(latent_groups="4"), "`--latent_groups` is '4'; accepted"),
        (dict(prior="flow"), "`--prior` is 'flow' with --architecture=hierarchical"),
        (dict(free_bits=0.5), "`--free_bits` is 0.5 with --architecture=hierarchical"),
    ],
)
def test_bad_hierarchy_flags_are_refused_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")) as error:
        config_lib.Config(**{**TINY_HIERARCHY, **changes})
    assert "\n" not in str(error.value)


def test_a_trained_hierarchy_reports_its_groups_and_its_samples(tmp_path, data_dir):
    config = tiny_config_for(
        data_dir, **{**TINY_HIERARCHY, "image_size": 16, "latent_groups": "4:1,8:2"},
        train_size=32, val_size=16, log_every_steps=1,
    )  # fmt: skip
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["bound_bits_per_dim"])
    events = scalar_events(tmp_path, "train")
    assert {"kl_group_0", "kl_group_1", "kl_group_2"} <= set(events)  # TensorBoard, per group
    run = run_command("bpp", f"--model_dir={tmp_path}", "--k=6", "--num_images=6")
    assert run.returncode == 0, run.stderr
    bpp = json.loads((tmp_path / "metrics.json").read_text())
    assert bpp["latents_per_group"] == [32, 128, 128] and bpp["latent_dim"] == 288
    assert len(bpp["kl_nats_per_group"]) == 3
    assert sum(bpp["active_units_per_group"]) == bpp["active_units"]
    model = model_lib.restore(str(tmp_path))[1]
    x = tf.random.stateless_uniform([2, 16, 16, 3], [0, 3])
    np.testing.assert_allclose(  # decoding the zero-noise code is the reconstruction
        likelihoods.point_estimate(model.decode(model.encode(x).code())),
        model.reconstruct(x),
    )
    assert model.group_slices() == [(0, 32), (32, 160), (160, 288)]
    for group, (low, high) in ((None, (0, 32)), (1, (32, 160))):  # the top group by default
        chosen = [] if group is None else [f"--group={group}"]
        run = run_command("traverse", f"--model_dir={tmp_path}", "--steps=3", "--num_dims=2",
                          *chosen)  # fmt: skip
        assert run.returncode == 0, run.stderr
        dims = json.loads((tmp_path / "figures" / "traversal.json").read_text())["dims"]
        assert len(dims) == 2 and all(low <= d < high for d in dims)
        run = run_command("interpolate", f"--model_dir={tmp_path}", *chosen)
        assert run.returncode == 0, run.stderr
        ends = json.loads((tmp_path / "figures" / "interpolation.json").read_text())
        moved = np.flatnonzero(np.asarray(ends["z0"]) != np.asarray(ends["z1"]))
        assert low <= moved.min() and moved.max() < high and len(moved) > (high - low) // 2
    refused = run_command("interpolate", f"--model_dir={tmp_path}", "--group=3")
    assert refused.returncode == 1
    assert "Flag `--group` is 3; accepted: -1 (every group) or 0 to 2" in refused.stderr
    # A sampler fits the top groups' codes (here two); the tools draw the groups below from
    # the prior.
    fitted = run_command("fit_sampler", f"--model_dir={tmp_path}", "--sampler=gmm",
                         "--components=2", "--groups=2")  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    info = json.loads((tmp_path / "samplers" / "gmm" / "sampler.json").read_text())
    assert info["fitted_on"]["num_images"] == 32
    assert (info["fitted_on"]["groups"], info["fitted_on"]["latent_dim"]) == (2, 160)
    assert store.load(str(tmp_path), "gmm", model_lib.restore(str(tmp_path))[2])[0].dims == 160
    refused = run_command("fit_sampler", f"--model_dir={tmp_path}", "--groups=4")
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: Flag `--groups` is 4; accepted: 0 (every group) or 1 to 3 (this run's latent "
        "groups, counted from the top)."
    )
    # Several groups' codes are one posterior draw each, in the prior's noise: decoding that
    # code draws the same z as the posterior pass did.
    several = store.latent_codes(config, model, "train", 0, 0, groups=0)
    assert several["draws"].shape == (32, 288) and not several["scales"].any()
    batch = next(iter(data.load_config_split(config, "train", 32).batch(32)))
    q = model.encode(data.to_unit_interval(batch["image"]))
    posterior_z = model.decoder(tf.random.stateless_normal([32, 288], [0, 7], alg="philox"),
                                q.features)["z"]  # fmt: skip
    np.testing.assert_allclose(model.decoder(several["draws"])["z"], posterior_z, atol=2e-4)
    np.testing.assert_array_equal(
        store.latent_codes(config, model, "train", 0, 0, groups=2)["draws"],
        several["draws"][:, :160],
    )
    codes = store.latent_codes(config, model, "train", 0, 0)
    eps = tf.random.stateless_normal([32, model.latent_dim], [5, 5])
    mean, scale, drawn = q.top_group(eps[:, :32])
    np.testing.assert_allclose(codes["means"], mean, rtol=1e-5, atol=1e-5)
    # In code units the top group's posterior is N(mean, scale^2): the top-down pass's own
    # prior noise of that group, for posterior noise eps, is mean + scale * eps.
    passed = model.decoder(eps, q.features)["prior_noise"][:, :32]
    np.testing.assert_allclose(mean + scale * eps[:, :32], passed, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(drawn, passed, rtol=1e-4, atol=1e-4)
    run = run_command(
        "sample_quality", f"--model_dir={tmp_path}", "--fid=off", "--num_shown=8",
        "--num_images=16", "--classifier_train_size=64", "--classifier_epochs=1",
        "--temperature=1.0,0.6,1.0:0.8:0.5", "--samplers=prior,gmm",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    quality = json.loads((tmp_path / "metrics.json").read_text())
    assert quality["factor_fd_samples_t0.6"] > 0 and quality["factor_fd_reconstructions"] > 0
    assert quality["factor_fd_samples_gmm_t0.6"] > 0
    assert quality["factor_fd_samples_gmm_t1.0_0.8_0.5"] > 0  # one T per group, top down
    for name in ("samples_t0.6", "samples_t1.0_0.8_0.5", "samples_gmm_t1.0_0.8_0.5"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    refused = run_command("sample_quality", f"--model_dir={tmp_path}", "--temperature=1.0:0.5")
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: Flag `--temperature`: temperature 1.0:0.5 gives 2 value(s); the model has 3 "
        "latent group(s): give one T, or one per group (top down, separated by ':')."
    )
    # One temperature per group scales each group's noise by its own T.
    per_group = model.latent_temperatures((1.0, 0.5, 0.25))
    np.testing.assert_array_equal(per_group, np.repeat([1.0, 0.5, 0.25], [32, 128, 128]))
    eps = model.prior.sample(4, [5, 6])
    np.testing.assert_allclose(
        model.sample(4, seed=[5, 6], temperature=(1.0, 0.5, 0.25)),
        model.sample(z=eps * np.repeat([1.0, 0.5, 0.25], [32, 128, 128])),
    )
    top = eps[:, :32]
    whole = model.with_lower_groups(top, [5, 6], (0.3, 0.5, 0.0))
    at_one = model.with_lower_groups(top, [5, 6], 1.0)
    np.testing.assert_array_equal(whole[:, :32], top)  # the given top group, not scaled
    np.testing.assert_allclose(whole[:, 32:160], 0.5 * at_one[:, 32:160], rtol=1e-6)
    np.testing.assert_array_equal(whole[:, 160:], 0.0)


@pytest.mark.parametrize("name", ["hierarchical_quick", "hierarchical_celeba"])
def test_the_hierarchical_flagfiles_are_valid_configs(name):
    fields = {f.name: f.type for f in dataclasses.fields(config_lib.Config)}
    casts = {"int": int, "float": float, "str": str, "bool": lambda v: v == "true"}
    values = {}
    for line in (REPO / "configs" / f"{name}.flags").read_text().splitlines():
        if line.startswith("--"):
            key, value = line[2:].split("=", 1) if "=" in line else (line[2:], "true")
            if key != "model_dir":
                values[key] = casts[fields[key]](value)
    config = config_lib.Config(**values)
    assert config.architecture == "hierarchical"
    assert config.likelihood == "discretized_logistic_mixture"
    assert config.kl_warmup_steps > 0 and config.ema_decay > 0 and config.skip_gradient_norm > 0


@pytest.mark.parametrize("dtype", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_every_log_probability_float32(tiny_hierarchy, dtype):
    keras.utils.set_random_seed(0)
    model = model_lib.build(tiny_hierarchy, dtype)
    assert model.decoder.compute_dtype != "float32"
    x = tf.round(tf.random.stateless_uniform([2, 8, 8, 3], [0, 4]) * 255) / 255
    terms = model.log_weight_terms(x, 2, seed=[1, 1])
    for name, value in terms.items():
        assert value.dtype == tf.float32 and np.all(np.isfinite(value)), name
    reference = model_lib.build(tiny_hierarchy)
    for low, full in zip(model.variables, reference.variables, strict=True):
        full.assign(tf.cast(low, full.dtype))
    exact = reference.log_weights(x, 2, seed=[1, 1])
    np.testing.assert_allclose(model.log_weights(x, 2, seed=[1, 1]), exact, rtol=0.02)
