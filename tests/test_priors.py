"""The learned priors (mog, vamp, flow) and the IAF posterior against theory and independent
references: densities integrate to one, draws follow the density (a chi-square test), the
VampPrior is the mixture of q(z|u_c) computed image by image, the flows equal TFP's
TransformedDistribution and the autodiff Jacobian, and a run with them trains and draws."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tests.factory import latent_groups
from tfvae.models import flows, networks, posteriors, priors
from tfvae.models import vae as model
from tfvae.training import train

tfb, tfd = tfp.bijectors, tfp.distributions


def _mog():
    tf.keras.utils.set_random_seed(2)
    prior = priors.MixtureOfGaussians(2, 3)
    prior.logits.assign([0.3, -0.5, 0.1])
    prior.log_scales.assign(np.log([[0.5, 0.8], [1.2, 0.4], [0.7, 0.7]]).astype(np.float32))
    return prior


def _encoder(latent_dim=2, image_size=8, posterior="diagonal"):
    tf.keras.utils.set_random_seed(3)
    encoder = networks.Encoder(
        latent_dim=latent_dim, width=4, num_stages=1, posterior=posterior, flow_width=8
    )
    encoder(tf.zeros([1, image_size, image_size, 3]))
    if posterior == "iaf":
        _far_from_identity(encoder.flow.mades, np.random.default_rng(3))
    return encoder


def _vamp(posterior="diagonal"):
    return priors.VampPrior(_encoder(posterior=posterior), components=4, image_size=8)


def _far_from_identity(mades, rng, spread=0.3):
    for made in mades:  # so the tests see the networks, not the identity map
        made.out.kernel.assign(rng.normal(0, spread, made.out.kernel.shape).astype(np.float32))


def _flow_prior(dims=2, seed=0):
    tf.keras.utils.set_random_seed(seed)
    prior = priors.FlowPrior(dims, layers=2, width=16)
    _far_from_identity(prior.flow.mades, np.random.default_rng(seed), 0.15)
    return prior


PRIORS = {"mog": _mog, "vamp": _vamp, "vamp_iaf": lambda: _vamp("iaf"), "flow": _flow_prior}


@pytest.mark.parametrize("make", PRIORS.values(), ids=PRIORS.keys())
def test_each_prior_integrates_to_one_and_its_draws_follow_its_density(make):
    prior = make()
    axis = np.arange(-7, 7, 0.05) + 0.025  # cell centres: each bin below holds whole cells
    a, b = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([a.ravel(), b.ravel()], -1).astype(np.float32)
    cell = (axis[1] - axis[0]) ** 2
    density = np.exp(prior.log_prob(grid).numpy().astype(np.float64))
    assert abs(density.sum() * cell - 1) < 2e-3
    # Chi-square goodness of fit of 20,000 draws (T = 1) on 8x8 bins of the grid's [-4, 4]^2 and
    # one bin for the rest; expected counts from the density on the grid.
    draws = prior.sample(20000, [4, 5]).numpy()
    edges = np.linspace(-4, 4, 9)

    def bins(points):
        inside = np.all(np.abs(points) < 4, axis=1)
        index = np.digitize(points[:, 0], edges) * 10 + np.digitize(points[:, 1], edges)
        return np.where(inside, index, 0)

    cells = np.unique(bins(grid))
    expected = np.array([density[bins(grid) == c].sum() * cell for c in cells]) * len(draws)
    expected *= len(draws) / expected.sum()  # the grid's own mass, renormalised
    observed = np.array([(bins(draws) == c).sum() for c in cells])
    kept = expected > 5  # the chi-square approximation needs expected counts >= 5
    statistic = ((observed[kept] - expected[kept]) ** 2 / expected[kept]).sum()
    p_value = scipy.stats.chi2.sf(statistic, kept.sum() - 1)
    assert p_value > 1e-3, (statistic, kept.sum())


@pytest.mark.parametrize("make", PRIORS.values(), ids=PRIORS.keys())
def test_temperature_scales_the_noise_of_each_draw(make):
    prior = make()
    cold = prior.sample(4000, [1, 2], temperature=0.5).numpy()
    warm = prior.sample(4000, [1, 2], temperature=1.0).numpy()
    assert np.isfinite(cold).all()
    # The same noise at a lower temperature: the draws are more concentrated.
    assert np.mean(prior.log_prob(cold)) > np.mean(prior.log_prob(warm))


@pytest.mark.parametrize("posterior", ["diagonal", "iaf"])
def test_the_vamp_prior_is_the_mean_of_q_of_each_pseudo_image(posterior):
    prior = _vamp(posterior)
    rng = np.random.default_rng(0)
    prior.pseudo_input_logits.assign(rng.normal(0, 2, prior.pseudo_input_logits.shape))
    z = tf.constant(rng.normal(size=[3, 5, 2]), tf.float32)  # [K, B, Z]
    by_hand = []
    for image in tf.sigmoid(prior.pseudo_input_logits):  # one pseudo-image at a time
        q = prior._encode(image[None], training=False)  # batch [1]
        by_hand.append(q.log_prob(z[..., None, :])[..., 0])  # [K, B]
    expected = tf.reduce_logsumexp(tf.stack(by_hand), 0) - np.log(4)
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-6, atol=1e-5)
    locs = tf.stack(
        [prior._encode(u[None], training=False).code()[0] for u in prior.pseudo_inputs()]
    )
    assert len({tuple(np.round(loc, 4)) for loc in locs.numpy()}) == 4  # distinct components


def _tfp_maf(network):
    """TFP's z = MAF_1(rev(MAF_2(rev(u)))) on N(0, I), the same MADEs as shift-and-log-scale."""
    chain = [tfb.Shift(network.shift_of_data), tfb.Scale(network.scale_of_data)]
    for made in network.mades:
        chain += [tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made)]
        chain += [tfb.Permute(list(range(network.dims))[::-1])]
    base = tfd.MultivariateNormalDiag(tf.zeros(network.dims))
    return tfd.TransformedDistribution(base, tfb.Chain(chain))


def test_the_flow_prior_equals_tfp_and_the_numeric_jacobian():
    dims = 5
    prior = _flow_prior(dims, seed=1)
    z = tf.constant(np.random.default_rng(1).normal(size=[4, 6, dims]), tf.float32)
    ours = prior.log_prob(z).numpy()
    assert ours.shape == (4, 6)
    np.testing.assert_allclose(ours, _tfp_maf(prior.flow).log_prob(z).numpy(), atol=1e-4)
    flat = tf.reshape(z, [-1, dims])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        u, _ = prior.flow.to_noise(flat)
    log_det = tf.math.log(tf.abs(tf.linalg.det(tape.batch_jacobian(u, flat))))
    numeric = tfd.MultivariateNormalDiag(tf.zeros(dims)).log_prob(u) + log_det
    np.testing.assert_allclose(ours.ravel(), numeric.numpy(), atol=1e-4)


def _iaf_posterior(dims=4, batch=3, context_dim=6, seed=0):
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    flow = flows.InverseAutoregressiveFlow(dims, layers=2, width=16, context_dim=context_dim)
    _far_from_identity(flow.mades, rng)
    base = tfd.MultivariateNormalDiag(
        tf.constant(rng.normal(size=[batch, dims]), tf.float32),
        tf.constant(rng.uniform(0.3, 1.5, [batch, dims]), tf.float32),
    )
    context = tf.constant(rng.normal(size=[batch, context_dim]), tf.float32)
    return posteriors.InverseAutoregressivePosterior(base, context, flow)


def test_the_iaf_posterior_equals_tfp_and_the_numeric_jacobian():
    q = _iaf_posterior()
    dims, batch = 4, 3
    noise = tf.random.stateless_normal([5, batch, dims], [2, 3])
    z, log_q = q.draw(noise)  # [K, B, Z], [K, B]
    # TFP: the same steps as inverted MAF bijectors of the context-conditioned MADEs. A step
    # y = x exp(s(x)) + m(x) is Invert(MAF) with shift -m exp(-s) and log scale -s.
    chain = []
    for made in q.flow.mades:

        def shift_and_log_scale(x, made=made):
            context = tf.broadcast_to(q.context, tf.concat([tf.shape(x)[:-1], [6]], 0))
            shift, log_scale = made(tf.reshape(x, [-1, dims]), tf.reshape(context, [-1, 6]))
            shift, log_scale = (tf.reshape(t, tf.shape(x)) for t in (shift, log_scale))
            return -shift * tf.exp(-log_scale), -log_scale

        step = tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale))
        chain = [tfb.Permute(list(range(dims))[::-1]), step, *chain]
    reference = tfd.TransformedDistribution(q.base.distribution, tfb.Chain(chain))
    np.testing.assert_allclose(log_q, reference.log_prob(z).numpy(), rtol=1e-5, atol=1e-4)
    z0 = q.base.distribution.bijector.forward(noise)
    np.testing.assert_allclose(z, tfb.Chain(chain).forward(z0), atol=1e-5)
    # The change of variables with the Jacobian of z_0 -> z_T taken by autodiff.
    flat0 = tf.reshape(z0, [-1, dims])
    context = tf.reshape(tf.broadcast_to(q.context, [5, batch, 6]), [-1, 6])
    with tf.GradientTape() as tape:
        tape.watch(flat0)
        flat_z, _ = q.flow.forward(flat0, context)
    jacobian = tape.batch_jacobian(flat_z, flat0)
    numeric = q.base.distribution.log_prob(z0) - tf.reshape(
        tf.math.log(tf.abs(tf.linalg.det(jacobian))), [5, batch]
    )
    np.testing.assert_allclose(log_q, numeric, rtol=1e-5, atol=1e-4)
    # Scoring any z inverts the flow: the drawn z score as their own log q, and z_0 comes back.
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(q.flow.inverse(z, q.context)[0], z0, atol=1e-4)


def test_the_iaf_posterior_integrates_to_one():
    q = _iaf_posterior(dims=2, batch=1, seed=4)
    axis = np.linspace(-8, 8, 321)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([a.ravel(), b.ravel()], -1).astype(np.float32)[:, None, :]  # [N, 1, 2]
    density = np.exp(q.log_prob(grid).numpy().astype(np.float64))
    assert abs(density.sum() * (axis[1] - axis[0]) ** 2 - 1) < 3e-3
    assert q.sample(seed=[1, 2]).shape == (1, 2) and q.sample(3, seed=[1, 2]).shape == (3, 1, 2)


@pytest.mark.parametrize(
    "changes",
    [
        dict(prior="vamp", prior_components=3),
        dict(prior="flow", posterior="iaf"),
        dict(prior="vamp", prior_components=2, posterior="iaf"),
    ],
    ids=["vamp", "flow+iaf", "vamp+iaf"],
)
def test_a_run_with_a_learned_prior_and_posterior_trains_and_draws(tiny_config, tmp_path, changes):
    config = tiny_config.replace(epochs=1, flow_layers=1, flow_width=8, **changes)
    tf.keras.utils.set_random_seed(config.seed)
    initial = [v.numpy() for v in model.build(config).prior.trainable_variables]
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["bound"]) and metrics["elbo"] <= metrics["bound"] + 1e-3
    _, vae, checkpoint = model.restore(str(tmp_path))
    tf.keras.utils.set_random_seed(config.seed + 1)
    other = model.build(config)  # other initial weights, then the checkpoint's
    tf.train.Checkpoint(model=other).restore(checkpoint).expect_partial()
    for a, b in zip(vae.variables, other.variables, strict=True):  # every weight was saved
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    trained = [v.numpy() for v in vae.prior.trainable_variables]
    assert any(not np.allclose(a, b) for a, b in zip(initial, trained, strict=True))
    draws = vae.prior.sample(4, [0, 1], temperature=0.5)
    assert draws.shape == (4, vae.latent_dim)
    assert vae.sample(4, seed=[0, 1], temperature=0.5).shape == (4, 16, 16, 3)
    assert vae.reconstruct(tf.zeros([2, 16, 16, 3])).shape == (2, 16, 16, 3)


def test_lower_groups_below_a_given_top_group_are_prior_noise_at_the_temperature():
    TwoGroups = latent_groups(3, 4000)

    top = np.arange(6, dtype=np.float32).reshape(2, 3)
    seed = tf.constant([5, 6], tf.int64)
    whole = TwoGroups.with_lower_groups(top, seed, 0.7).numpy()
    assert whole.shape == (2, 4003)
    np.testing.assert_array_equal(whole[:, :3], top)  # the given top group, untouched
    lower = whole[:, 3:] / 0.7  # 8000 N(0, 1) draws: mean 0 +- 0.011, std 1 +- 0.008
    assert abs(lower.mean()) < 0.05 and abs(lower.std() - 1.0) < 0.04
    np.testing.assert_array_equal(TwoGroups.with_lower_groups(top, seed, 0.7), whole)
    assert not np.allclose(TwoGroups.with_lower_groups(top, seed + 1, 0.7), whole)
    np.testing.assert_array_equal(TwoGroups.with_lower_groups(top, seed, 0)[:, 3:], 0.0)

    OneGroup = latent_groups(3)
    np.testing.assert_array_equal(OneGroup.with_lower_groups(top, seed, 0.7), top)

    ThreeGroups = latent_groups(3, 2, 4)  # a sampler may give the top two groups' code

    two = np.arange(10, dtype=np.float32).reshape(2, 5)
    whole = ThreeGroups.with_lower_groups(two, seed, (1.0, 0.5, 0.0)).numpy()
    np.testing.assert_array_equal(whole, np.concatenate([two, np.zeros([2, 4])], 1))
    third = ThreeGroups.with_lower_groups(two, seed, (1.0, 1.0, 0.5)).numpy()[:, 5:]
    np.testing.assert_allclose(
        third, 0.5 * ThreeGroups.with_lower_groups(two, seed, 1.0).numpy()[:, 5:]
    )
    with pytest.raises(ValueError, match="A code of 4 latents does not end at a latent group; "
                       "the groups end at 3, 5, 9."):  # fmt: skip
        ThreeGroups.with_lower_groups(two[:, :4], seed)


def test_the_top_group_of_a_one_group_posterior_is_its_whole_code():
    noise = tf.random.stateless_normal([3, 4], [4, 5])
    loc, scale = tf.constant([[0.5, -1.0, 2.0, 0.0]] * 3), tf.constant([[0.1, 2.0, 1.0, 0.5]] * 3)
    q = posteriors.GaussianPosterior(tfd.MultivariateNormalDiag(loc, scale))
    mean, std, z = q.top_group(noise)
    np.testing.assert_allclose(mean, loc), np.testing.assert_allclose(std, scale)
    np.testing.assert_allclose(z, loc + scale * noise, rtol=1e-6)
    q = _iaf_posterior()  # no closed-form moments: its draw, with scale 0
    mean, std, z = q.top_group(noise)
    np.testing.assert_allclose(z, q.draw(noise[None])[0][0]), np.testing.assert_array_equal(std, 0)
    np.testing.assert_array_equal(mean, z)
