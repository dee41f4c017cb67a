"""Samplers fitted to latent codes and the learned mog prior: densities against independent
references, sampling against the density, the saved directory, and refusal of a sampler fitted on
another checkpoint."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.factory import latent_groups, run_command
from tfvae.models import flows, priors
from tfvae.models import vae as model
from tfvae.samplers import densities, gaussian, store
from tfvae.samplers import flow as flow_lib
from tfvae.training import train

tfb, tfd = tfp.bijectors, tfp.distributions


def _grid(half_width=6.0, count=241):
    axis = np.linspace(-half_width, half_width, count)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], -1).astype(np.float32), (axis[1] - axis[0]) ** 2


def _mixture():
    return densities.GaussianMixture(
        [0.2, 0.5, 0.3],
        [[-1.5, 0.0], [1.0, 1.0], [0.5, -1.5]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.2, 0.0], [0.0, 0.6]]],
    )


def _flow(seed=0):
    tf.keras.utils.set_random_seed(seed)
    network = flows.MaskedAutoregressiveFlow(2, layers=2, width=16)
    rng = np.random.default_rng(seed)
    for made in network.mades:  # far from the identity, so the test sees the networks
        made.out.kernel.assign(rng.normal(0, 0.15, made.out.kernel.shape).astype(np.float32))
    return densities.Flow(network)


def _rotation(dims, seed):
    """A random orthonormal basis [dims, dims] (the Q of a Gaussian matrix)."""
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(dims, dims)))[0]


def _principal_mixture():
    """A mixture of two components along one direction of a rotated plane, a Gaussian across."""
    return densities.GaussianMixture(
        [0.4, 0.6], [[-1.2], [1.0]], [[[0.2]], [[0.4]]], basis=_rotation(2, 5),
        center=[0.3, -0.2], residual_variances=[0.5],
    )  # fmt: skip


def _mog_prior():
    tf.keras.utils.set_random_seed(2)
    prior = priors.MixtureOfGaussians(2, 3)
    prior.logits.assign([0.3, -0.5, 0.1])
    prior.log_scales.assign(np.log([[0.5, 0.8], [1.2, 0.4], [0.7, 0.7]]).astype(np.float32))
    return prior


def test_the_mixture_density_equals_scikit_learn():
    mixture_lib = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(-2, 1, [300, 4]), rng.normal(2, 0.5, [300, 4])])
    fitted = mixture_lib.GaussianMixture(3, covariance_type="full", random_state=0).fit(codes)
    ours = densities.GaussianMixture(fitted.weights_, fitted.means_, fitted.covariances_)
    np.testing.assert_allclose(
        ours.log_prob(codes.astype(np.float32)).numpy(), fitted.score_samples(codes), atol=2e-4
    )


@pytest.mark.parametrize(
    "make",
    [
        _mixture,
        _flow,
        lambda: densities.gaussian([0.5, -0.5], [[1, 0.6], [0.6, 0.8]]),
        _mog_prior,
        _principal_mixture,
    ],
    ids=["gmm", "flow", "gaussian", "mog_prior", "gmm_along_principal_directions"],
)
def test_each_density_integrates_to_one_and_its_samples_have_its_moments(make):
    sampler = make()
    grid, cell = _grid()
    p = np.exp(sampler.log_prob(grid).numpy().astype(np.float64)) * cell
    assert abs(p.sum() - 1) < 2e-3  # the grid reaches 6 standard deviations or more
    mean = p @ grid
    second = (grid * p[:, None]).T @ grid  # E[z z^T]
    draws = sampler.sample(40_000, [3, 4]).numpy().astype(np.float64)
    centred = draws - mean
    # Every first and second moment of the draws within 5 standard errors of the density's.
    stderr = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * stderr)
    products = draws[:, :, None] * draws[:, None, :]
    stderr2 = products.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(products.mean(0) - second) < 5 * stderr2 + 1e-3), centred.std(0)


def test_the_flow_equals_tfp_transformed_distribution_and_the_numeric_jacobian():
    dims = 5
    tf.keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    network = flows.MaskedAutoregressiveFlow(
        dims, layers=2, width=16, mean=rng.normal(size=dims), std=rng.uniform(0.5, 2, dims)
    )
    for made in network.mades:  # far from the identity, so the test sees the networks
        made.out.kernel.assign(rng.normal(0, 0.3, made.out.kernel.shape).astype(np.float32))
    sampler = densities.Flow(network)
    z = tf.constant(rng.normal(size=[16, dims]), tf.float32)
    ours = sampler.log_prob(z).numpy()
    # TFP: z = m + s * MAF_1(rev(MAF_2(rev(u)))), u ~ N(0, I), the MADEs as shift-and-log-scale.
    chain = [tfb.Shift(network.shift_of_data), tfb.Scale(network.scale_of_data)]
    for made in network.mades:
        reverse = tfb.Permute(list(range(dims))[::-1])
        chain += [tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made), reverse]
    reference = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(dims)), tfb.Chain(chain)
    )
    np.testing.assert_allclose(ours, reference.log_prob(z).numpy(), atol=1e-4)
    # Change of variables with the Jacobian of z -> u taken by autodiff.
    with tf.GradientTape() as tape:
        tape.watch(z)
        u, _ = network.to_noise(z)
    jacobian = tape.batch_jacobian(u, z)
    base = tfd.MultivariateNormalDiag(tf.zeros(dims)).log_prob(u)
    numeric = base + tf.math.log(tf.abs(tf.linalg.det(jacobian)))
    np.testing.assert_allclose(ours, numeric.numpy(), atol=1e-4)
    # Sampling inverts the density's map: the noise of a sample is the noise it came from.
    # MADE: output d of each network depends on inputs < d only (a Jacobian check).
    for made in network.mades:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            shift, log_scale = made(z)
        for out in (shift, log_scale):
            dependence = np.abs(tape.batch_jacobian(out, z).numpy()).max(0)  # [out d, in j]
            assert np.all(dependence[np.triu_indices(dims)] == 0)  # j >= d: no dependence
    noise = tf.random.stateless_normal([16, dims], [5, 6], alg="philox")
    np.testing.assert_allclose(network.to_noise(network.from_noise(noise))[0], noise, atol=1e-4)


def test_a_fitted_flow_beats_the_best_gaussian_on_a_curved_cloud():
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    codes = np.stack([x, 0.5 * x**2 + 0.1 * rng.normal(size=3000)], -1).astype(np.float32)
    network, history = flow_lib.fit_flow(codes[:2500], codes[2500:], 3, 32, 15, seed=0)
    moments = densities.gaussian(codes[:2500].mean(0), np.cov(codes[:2500], rowvar=False))
    held_out = codes[2500:]
    gain = network.log_prob(held_out).numpy().mean() - moments.log_prob(held_out).numpy().mean()
    assert gain > 0.5 and max(history) == pytest.approx(
        network.log_prob(held_out).numpy().mean(), abs=1e-4
    )  # the best epoch is kept


def test_fit_sampler_writes_a_whole_directory_that_every_later_checkpoint_refuses(
    tiny_config, tmp_path
):
    model_dir = tmp_path / "run"
    config = tiny_config.replace(epochs=1)
    train.train_and_evaluate(config, str(model_dir))
    for args in (
        ["--sampler=gmm", "--components=3"],
        ["--sampler=flow", "--sampler_flow_epochs=2", "--sampler_flow_width=8"],
        ["--sampler=gaussian"],
        ["--sampler=gaussian", "--shrinkage=auto", "--name=shrunk"],
    ):
        result = run_command("fit_sampler", f"--model_dir={model_dir}", *args)
        assert result.returncode == 0, result.stderr[-2000:]
    # --flow_width names the model's flow, a training setting of the run: never the sampler's
    clash = run_command(
        "fit_sampler", f"--model_dir={model_dir}", "--sampler=flow", "--flow_width=8"
    )
    assert clash.returncode == 1 and "--flow_width=8 (given) vs 128" in clash.stderr
    shrunk = json.loads((model_dir / "samplers" / "shrunk" / "sampler.json").read_text())
    assert shrunk["settings"]["shrinkage_from"] == "ledoit_wolf"
    assert 0 <= shrunk["settings"]["shrinkage"] <= 1 and shrunk["sampler"] == "gaussian"
    assert (
        json.loads((model_dir / "samplers" / "gaussian" / "sampler.json").read_text())["settings"]
        == {}
    )  # exact moments
    info = json.loads((model_dir / "samplers" / "gmm" / "sampler.json").read_text())
    assert info["checkpoint"] == "ckpt-4" and info["step"] == 4
    assert info["fitted_on"] == {
        "split": "train",
        "num_images": 64,
        "codes": "one draw z ~ q(z|x) per image",
        "seed": 0,
        "groups": 1,
        "latent_dim": 4,
    }
    assert info["settings"]["components"] == 3
    assert sorted(p.name for p in (model_dir / "samplers").iterdir()) == [
        "flow",
        "gaussian",
        "gmm",
        "shrunk",
    ]  # no staging
    checkpoint = str(model_dir / "ckpt-4")
    for name in ("gmm", "flow", "gaussian"):
        sampler, _ = store.load(str(model_dir), name, checkpoint)
        assert sampler.sample(5, [0, 1]).shape == (5, config.latent_dim)
        codes = sampler.sample(200, [0, 2])
        assert np.isfinite(sampler.log_prob(codes).numpy()).all()
    moments = store.latent_codes(config, model.restore(str(model_dir))[1], "train", 0, 0)
    gaussian, _ = store.load(str(model_dir), "gaussian", checkpoint)
    np.testing.assert_allclose(gaussian.means.numpy()[0], moments["means"].mean(0), atol=1e-5)
    train.train_and_evaluate(config.replace(epochs=2), str(model_dir))  # a newer checkpoint
    with pytest.raises(ValueError, match="fitted on ckpt-4, but the run's newest checkpoint is"):
        store.load(str(model_dir), "gmm", str(model_dir / "ckpt-8"))
    with pytest.raises(ValueError, match="has no sampler 'vamp' .fitted: flow, gaussian, gmm"):
        store.load(str(model_dir), "vamp", str(model_dir / "ckpt-8"))


def test_a_run_with_the_mog_prior_learns_it_and_draws_from_it(tiny_config, tmp_path):
    config = tiny_config.replace(epochs=1, prior="mog", prior_components=3)
    tf.keras.utils.set_random_seed(config.seed)
    initial = model.build(config).prior.means.numpy()
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["bound"])
    _, vae, _ = model.restore(str(tmp_path))
    assert isinstance(vae.prior, priors.MixtureOfGaussians)
    assert not np.allclose(vae.prior.means.numpy(), initial)  # trained with the model
    draws = vae.prior.sample(4, [0, 1], temperature=0.5)
    np.testing.assert_allclose(draws, vae.prior.sample(4, [0, 1], 0.5))
    assert vae.sample(4, seed=[0, 1], temperature=0.5).shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="free bits need the per-dimension KL of --prior=normal"):
        config.replace(free_bits=0.1)


def test_a_mixture_along_principal_directions_is_the_full_mixture_it_stands_for():
    # In Z = 5 dimensions: two components along P = 2 directions of a basis V, independent
    # Gaussians along the other three. As a mixture in Z dimensions its component c has mean
    # center + V_P m_c and covariance V_P S_c V_P^T + V_R diag(r) V_R^T (scipy scores that).
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    basis, center = _rotation(5, 4), rng.normal(size=5)
    weights, means = np.array([0.3, 0.7]), rng.normal(0, 2, size=(2, 2))
    factors = rng.normal(size=(2, 2, 2))
    covariances = factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(2)
    residual = np.array([0.5, 0.2, 1.5])
    sampler = densities.GaussianMixture(
        weights, means, covariances, basis=basis, center=center, residual_variances=residual
    )
    full_means = center + means @ basis[:, :2].T
    full_covariances = (
        basis[:, :2] @ covariances @ basis[:, :2].T + (basis[:, 2:] * residual) @ basis[:, 2:].T
    )
    z = rng.normal(0, 2, size=(64, 5))
    reference = np.log(sum(
        w * stats.multivariate_normal(m, c).pdf(z)
        for w, m, c in zip(weights, full_means, full_covariances, strict=True)
    ))  # fmt: skip
    np.testing.assert_allclose(sampler.log_prob(z.astype(np.float32)).numpy(), reference, atol=2e-4)
    # Its draws: the full mixture's mean and covariance within 5 standard errors
    draws = sampler.sample(40_000, [1, 2]).numpy().astype(np.float64)
    mean = weights @ full_means
    covariance = sum(
        w * (c + np.outer(m - mean, m - mean))
        for w, m, c in zip(weights, full_means, full_covariances, strict=True)
    )
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * draws.std(0) / np.sqrt(len(draws)))
    standard_error = np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2)
                             / len(draws))  # fmt: skip
    assert np.all(np.abs(np.cov(draws, rowvar=False) - covariance) < 5 * standard_error)
    # Temperature scales each draw's noise around its own component's centre, per latent
    seed, temperature = tf.constant([1, 2], tf.int64), np.array([0.5, 1.0, 2.0, 0.0, 1.5])
    centres = sampler.sample(100, seed, 0.0).numpy()
    np.testing.assert_allclose(
        sampler.sample(100, seed, temperature).numpy() - centres,
        temperature * (draws[:100] - centres), atol=1e-4,
    )  # fmt: skip
    # Saved and loaded: the same density
    again = densities.GaussianMixture(**sampler.arrays())
    np.testing.assert_allclose(again.log_prob(z.astype(np.float32)), reference, atol=2e-4)


def test_one_component_along_principal_directions_is_the_codes_gaussian():
    stats = pytest.importorskip("scipy.stats")
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    draws = (rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)).astype(
        np.float32
    )
    codes = {"means": draws, "scales": 0 * draws, "draws": draws}
    sampler, settings = store.fit("gmm", codes, codes, components=1, principal_dims=2)
    exact = stats.multivariate_normal(draws.mean(0), np.cov(draws, rowvar=False, bias=True))
    np.testing.assert_allclose(sampler.log_prob(draws[:50]).numpy(), exact.logpdf(draws[:50]),
                               atol=1e-3)  # fmt: skip
    variances = np.linalg.eigvalsh(np.cov(draws, rowvar=False, bias=True))[::-1]
    assert settings["principal_dims"] == 2 and settings["variance_explained"] == pytest.approx(
        variances[:2].sum() / variances.sum(), rel=1e-6
    )
    # Two clusters along one direction: two components there score held-out codes far higher
    labels = rng.integers(0, 2, 3000)
    clustered = (rng.normal(size=(3000, 6)) * 0.3 + 3.0 * np.where(labels, 1, -1)[:, None]
                 * np.eye(6)[0]).astype(np.float32)  # fmt: skip
    train, held_out = (
        {"means": c, "scales": 0 * c, "draws": c} for c in np.split(clustered, [2500])
    )
    two, _ = store.fit("gmm", train, held_out, components=2, principal_dims=1)
    one, _ = store.fit("gmm", train, held_out, components=1, principal_dims=1)
    gain = store.mean_log_density(two, held_out["draws"]) - store.mean_log_density(
        one, held_out["draws"]
    )
    assert gain > 1.0  # about 1.6: 0.5 log(2 pi e 9.09) against 0.5 log(2 pi e 0.09) + log 2
    with pytest.raises(ValueError, match="`--principal_dims` is 7; accepted: 0") as refused:
        store.fit("gmm", codes, codes, components=1, principal_dims=7)
    assert "\n" not in str(refused.value)


def test_a_gaussian_of_more_latents_than_codes_is_refused_in_one_line():
    draws = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)  # rank 5 < 8
    codes = {"means": draws, "scales": np.zeros_like(draws), "draws": draws}
    with pytest.raises(ValueError, match="singular covariance") as refused:
        store.fit("gaussian", codes, codes)
    assert "\n" not in str(refused.value) and "5 training codes of 8 latents" in str(refused.value)
    full = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
    sampler, _ = store.fit(
        "gaussian", {**codes, "means": full, "scales": 0 * full, "draws": full}, codes
    )
    np.testing.assert_allclose(sampler.means.numpy()[0], full.mean(0), atol=1e-5)  # fitted


def test_ledoit_wolf_shrinkage_matches_scikit_learn_and_its_limits():
    from sklearn.covariance import ledoit_wolf_shrinkage

    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(6, 6))
    for points in (rng.normal(size=(40, 6)) @ mixing, rng.normal(size=(9, 30)) * 2 + 1):
        assert gaussian.ledoit_wolf_shrinkage(points) == pytest.approx(
            ledoit_wolf_shrinkage(points), rel=1e-10, abs=1e-12
        )  # an independent implementation of the same estimator
    # Isotropic points, as few as their latents: the scaled identity is the truth, s near 1;
    # strongly correlated ones, many: the sample covariance is, s near 0.
    assert gaussian.ledoit_wolf_shrinkage(rng.normal(size=(50, 50))) > 0.8
    assert gaussian.ledoit_wolf_shrinkage(rng.normal(size=(5000, 6)) @ mixing) < 0.01


def test_a_shrunk_gaussian_scores_held_out_codes_above_the_exact_moments():
    # 60 codes of 40 latents from N(0, diag(v)): the exact moments overfit (held-out codes score
    # below the truth by tens of nats); Ledoit-Wolf's shrinkage recovers most of the gap.
    rng = np.random.default_rng(4)
    variances = np.linspace(0.5, 2.0, 40)
    train, held_out = (rng.normal(size=(n, 40)) * np.sqrt(variances) for n in (60, 2000))
    codes = {"means": train, "scales": np.zeros_like(train), "draws": train}
    exact, none = store.fit("gaussian", codes, codes)
    shrunk, settings = store.fit("gaussian", codes, codes, shrinkage="auto")
    assert none == {} and settings["shrinkage_from"] == "ledoit_wolf"
    assert 0.3 < settings["shrinkage"] < 1
    truth = np.mean(-0.5 * np.sum(held_out**2 / variances + np.log(2 * np.pi * variances), 1))
    scores = [store.mean_log_density(s, held_out.astype(np.float32)) for s in (exact, shrunk)]
    assert scores[0] < truth - 10 and truth - 3 < scores[1] < truth
    # An explicit share: the formula itself (the means' covariance with 1 / (N - 1), as the
    # exact moments), and the codes' posterior variances kept whole; 0 is the exact moments.
    scales = np.full_like(train, 0.3)
    mean, covariance, used = gaussian.shrunk_aggregate_posterior(train, scales, 0.25)
    centred = train - train.mean(0)
    between = centred.T @ centred / (len(train) - 1)
    expected = 0.75 * between + 0.25 * np.trace(between) / 40 * np.eye(40) + 0.09 * np.eye(40)
    np.testing.assert_allclose(covariance, expected, rtol=1e-12)
    assert used == 0.25 and np.allclose(mean, train.mean(0))
    exact_moments = gaussian.aggregate_posterior(train, scales)["covariance"]
    assert np.array_equal(gaussian.shrunk_aggregate_posterior(train, scales, 0)[1], exact_moments)
    for bad, message in (
        (dict(shrinkage=1.5), "`--shrinkage` is 1.5; accepted: a number in [0, 1] or 'auto'"),
        (dict(shrinkage=-0.1), "`--shrinkage` is -0.1; accepted: a number in [0, 1] or 'auto'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            store.fit("gaussian", codes, codes, **bad)
    with pytest.raises(ValueError, match="only the gaussian sampler shrinks its covariance"):
        store.fit("gmm", codes, codes, components=2, shrinkage=0.5)
    one = {k: v[:1] for k, v in codes.items()}
    with pytest.raises(ValueError, match="needs at least 2 training codes for a covariance; got 1"):
        store.fit("gaussian", one, one)
    draws = np.random.default_rng(0).normal(size=(5, 8))  # rank 5 < 8: shrinking makes it whole
    few = {"means": draws, "scales": np.zeros_like(draws), "draws": draws}
    assert store.fit("gaussian", few, few, shrinkage="auto")[0].dims == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sampler=gaussian", "--shrinkage=1.5"], "is '1.5'; accepted: a number in [0, 1] or"),
        (["--sampler=gaussian", "--shrinkage=nan"], "is 'nan'; accepted: a number in [0, 1] or"),
        (["--sampler=gaussian", "--shrinkage=abc"], "is 'abc'; accepted: a number in [0, 1] or"),
        (["--sampler=gaussian", "--shrinkage=-0.1"], "is '-0.1'; accepted: a number in [0, 1]"),
        (["--sampler=gmm", "--shrinkage=auto"], "is 'auto' with --sampler=gmm; only the gaussian"),
        (["--sampler=flow", "--principal_dims=8"], "is 8 with --sampler=flow; only the gmm"),
    ],
)
def test_a_bad_sampler_setting_is_refused_in_one_line_before_any_work(tmp_path, args, message):
    refused = run_command("fit_sampler", f"--model_dir={tmp_path}", *args)
    assert refused.returncode == 1
    flag = args[1].split("=")[0]
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: Flag `{flag}` {message}")
    assert list(tmp_path.iterdir()) == []


def test_a_sampler_of_several_groups_draws_each_at_its_own_temperature():
    ThreeGroups = latent_groups(2, 3, 4)  # what sampler_codes reads of a hierarchy

    rng = np.random.default_rng(0)
    mean, mixing = rng.normal(size=5), rng.normal(size=(5, 5))
    top_two = densities.gaussian(mean, mixing @ mixing.T + np.eye(5))  # the top two groups
    seed = tf.constant([3, 4], tf.int64)
    at_one = store.sampler_codes(ThreeGroups, top_two, 2000, seed, 1.0).numpy()
    # the same noise L eps scaled per latent: 0.5 in the top group, 0 in the second, and the
    # third group (not the sampler's) from the prior at its own T
    cooled = store.sampler_codes(ThreeGroups, top_two, 2000, seed, (0.5, 0.0, 2.0)).numpy()
    np.testing.assert_allclose(
        cooled[:, :2], mean[:2] + 0.5 * (at_one[:, :2] - mean[:2]), atol=1e-5
    )
    np.testing.assert_allclose(cooled[:, 2:5], np.broadcast_to(mean[2:], (2000, 3)), atol=1e-6)
    lower = cooled[:, 5:] / 2.0  # 8000 N(0, 1) draws
    assert abs(lower.mean()) < 0.05 and abs(lower.std() - 1.0) < 0.04
    # at T=1 the draws have the fitted covariance, within 4 standard errors of a sample
    # covariance of 2000 Gaussian draws: se_ij = sqrt((S_ii S_jj + S_ij^2) / n)
    covariance = top_two.covariances[0]
    standard_error = np.sqrt(
        (np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / 2000
    )
    assert np.all(np.abs(np.cov(at_one[:, :5], rowvar=False) - covariance) < 4 * standard_error)
    # a number is every group's T, as before
    np.testing.assert_allclose(
        store.sampler_codes(ThreeGroups, top_two, 2000, seed, 0.5).numpy()[:, :5],
        mean + 0.5 * (at_one[:, :5] - mean), atol=1e-5,
    )  # fmt: skip


def test_the_table_of_kinds_fits_and_loads_every_sampler_the_commands_name():
    from tfvae.samplers import KINDS, kinds

    assert tuple(kinds.TABLE) == KINDS
