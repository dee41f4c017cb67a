import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.models import likelihoods

LEVELS = np.arange(256, dtype=np.float32) / 255.0


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("loc,scale", [(0.5, 0.05), (0.0, 0.01), (1.02, 0.2), (0.3, 1e-3)])
def test_discretized_logistic_sums_to_one_over_256_values(compiled, loc, scale):
    dist = likelihoods.DiscretizedLogistic(loc, scale)
    log_prob = tf.function(dist.log_prob) if compiled else dist.log_prob
    probs = np.exp(log_prob(LEVELS).numpy().astype(np.float64))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


def test_discretized_logistic_matches_the_logistic_cdf_by_hand():
    loc, scale = 0.4, 0.03
    cdf = lambda v: 1 / (1 + np.exp(-(v - loc) / scale))  # noqa: E731
    expected = [cdf(0.5 / 255), cdf(100.5 / 255) - cdf(99.5 / 255), 1 - cdf(254.5 / 255)]
    x = np.array([0, 100, 255], np.float32) / 255
    got = np.exp(likelihoods.DiscretizedLogistic(loc, scale).log_prob(x).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("scale", [1e-3, 0.01, 0.1, 2.0])
def test_discretized_logistic_closed_form_equals_tfp_quantized_distribution(scale):
    locs = np.linspace(-0.2, 1.2, 15)[:, None]  # [15, 1] against 256 levels
    closed_form = likelihoods.DiscretizedLogistic(locs, scale).log_prob(LEVELS).numpy()
    tfd = tfp.distributions
    logistic = tfd.Logistic(locs * 255.0, scale * 255.0)  # float64 reference from TFP pieces
    shifted = tfd.TransformedDistribution(logistic, tfp.bijectors.Shift(np.float64(-0.5)))
    reference = tfd.QuantizedDistribution(shifted, low=0.0, high=255.0).log_prob(np.arange(256.0))
    reference = reference.numpy()
    finite = reference > -80  # far in the tails a float32 result may round differently
    np.testing.assert_allclose(closed_form[finite], reference[finite], rtol=2e-6, atol=2e-5)
    assert np.all(np.isfinite(closed_form)) and np.all(closed_form[~finite] < -70)


def test_discretized_logistic_gradients_are_finite_at_extreme_scales():
    loc, scale = tf.Variable([0.5, 0.5, 0.0]), tf.Variable([1e-3, 5.0, 1e-3])
    with tf.GradientTape() as tape:
        log_prob = likelihoods.DiscretizedLogistic(loc, scale).log_prob([1.0, 0.0, 1.0])
    gradients = tape.gradient(log_prob, [loc, scale])
    assert all(np.all(np.isfinite(g)) for g in gradients)


def test_discretized_logistic_median_and_samples_lie_on_the_pixel_grid():
    dist = likelihoods.DiscretizedLogistic(tf.fill([50], 0.7), 0.02)
    samples = dist.sample(3, seed=[1, 2]).numpy() * 255
    np.testing.assert_allclose(samples, np.round(samples), atol=1e-4)
    assert np.all((samples >= 0) & (samples <= 255))
    np.testing.assert_allclose(dist.median(), round(0.7 * 255) / 255)


def test_bernoulli_logits_zero_is_one_bit_per_dim_on_binary_pixels():
    dist = likelihoods.make("bernoulli", tf.zeros([2, 4, 4, 3]))
    x = tf.cast(tf.random.stateless_uniform([2, 4, 4, 3], [0, 1]) > 0.5, tf.float32)
    np.testing.assert_allclose(-dist.log_prob(x) / (48 * math.log(2)), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["bernoulli", "gaussian", "discretized_logistic", "discretized_logistic_mixture"]
)
@pytest.mark.parametrize("params_dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_likelihoods_have_image_events_and_float32_log_probs(name, params_dtype):
    channels = likelihoods.parameter_channels(name)
    dist = likelihoods.make(name, tf.zeros([5, 8, 8, channels], params_dtype))
    assert dist.batch_shape == [5] and dist.event_shape == [8, 8, 3]
    log_prob = dist.log_prob(tf.fill([5, 8, 8, 3], 0.5))
    assert log_prob.shape == [5] and log_prob.dtype == tf.float32
    image = likelihoods.point_estimate(dist)
    assert image.shape == [5, 8, 8, 3] and np.all((image >= 0) & (image <= 1))


def test_fixed_scale_gaussian_needs_one_channel_per_colour():
    assert likelihoods.parameter_channels("gaussian", gaussian_scale=0.1) == 3
    dist = likelihoods.make("gaussian", tf.zeros([1, 2, 2, 3]), gaussian_scale=0.1)
    assert isinstance(dist.distribution, tfp.distributions.Normal)
    np.testing.assert_allclose(dist.distribution.scale, 0.1)


def test_unknown_likelihood_is_one_clear_error():
    with pytest.raises(ValueError, match="'poisson' is unknown; accepted"):
        likelihoods.parameter_channels("poisson")


# The mixture of discretized logistics (PixelCNN++).


def _mixture_params(rng, components, extreme=False):
    """Random (logits [M], locs, scales, coefficients [M, 3]) in [0, 1] pixel units."""
    if extreme:  # floor and huge scales, means outside [0, 1], saturated coefficients and logits
        scales = rng.choice([1e-3, 1e-3, 5.0, 0.01], size=(components, 3))
        return (
            rng.choice([-30.0, 0.0, 30.0], size=components),
            rng.choice([-0.4, 0.0, 0.5, 1.0, 1.3], size=(components, 3)),
            scales,
            rng.choice([-1.0, 1.0, 0.0], size=(components, 3)),
        )
    return (
        3 * rng.normal(size=components),
        rng.uniform(-0.1, 1.1, size=(components, 3)),
        np.exp(rng.uniform(np.log(2e-3), np.log(1.0), size=(components, 3))),
        np.tanh(2 * rng.normal(size=(components, 3))),
    )


@pytest.mark.parametrize("components,extreme", [(6, False), (4, True)])
def test_mixture_sums_to_one_over_all_256_cubed_colours(components, extreme):
    params = _mixture_params(np.random.default_rng(components), components, extreme)
    dist = likelihoods.DiscretizedLogisticMixture(*params)
    green, blue = np.meshgrid(LEVELS, LEVELS, indexing="ij")  # [256, 256]

    @tf.function
    def total_probability():
        def red_slice(red):  # P summed over the 65,536 colours with this red, float64
            colours = tf.stack([tf.fill([256 * 256], red), green.ravel(), blue.ravel()], -1)
            log_prob = dist.log_prob(colours)  # [65536] float32
            return tf.reduce_sum(tf.exp(tf.cast(log_prob, tf.float64)))

        return tf.reduce_sum(tf.map_fn(red_slice, LEVELS, fn_output_signature=tf.float64))

    np.testing.assert_allclose(total_probability().numpy(), 1.0, rtol=2e-6)


def _pixel_cnn_log_prob(logits, locs, scales, coefficients, values):
    """TFP's PixelCNN mixture log-probability of `values` [N, H, W, 3] (levels), float64 [N]:
    the sum over each image's H x W pixels.

    TFP's PixelCNN works in [-1, 1]: its locations are 2 loc - 1, its scales 2 scale, and its
    channel means add coefficient x (2 v / 255 - 1) of earlier channels (pixel_cnn.py, _log_prob).
    Parameters are float64 tensors broadcastable to [N, H, W, M(, 3)], so a tape sees through.
    """
    components = logits.shape[-1]
    pixels = tuple(values.shape[:-1]) + (components,)  # [N, H, W, M]
    centred = 2.0 * values / 255.0 - 1.0  # [N, H, W, 3]
    a, b, c = (coefficients[..., i] for i in range(3))  # each [..., M]
    red, green = centred[..., 0:1], centred[..., 1:2]  # [N, H, W, 1]
    tfp_locs = tf.stack(
        [
            tf.broadcast_to(2 * locs[..., 0] - 1, pixels),
            2 * locs[..., 1] - 1 + a * red,
            2 * locs[..., 2] - 1 + b * red + c * green,
        ],
        axis=-1,
    )  # [N, H, W, M, 3]
    owner = type("PixelCNNParameters", (), dict(_low=0.0, _high=255.0, dtype=tf.float64))()
    reference = tfp.distributions.PixelCNN._make_mixture_dist(
        owner, tf.broadcast_to(logits, pixels), tfp_locs, 2 * scales
    )  # event [H, W, 3]: the sum over an image's pixels
    return reference.log_prob(values)


def _random_and_extreme_pixel(components, samples=40):
    """Mixture parameters [2 pixels, 1, ...] (a random and an extreme pixel) and colour levels
    [samples, 2, 1, 3], float64, the first four colours at the corners of the cube."""
    rng = np.random.default_rng(7)
    params = [
        np.stack([p, q])[:, None]
        for p, q in zip(
            _mixture_params(rng, components),
            _mixture_params(rng, components, extreme=True),
            strict=True,
        )
    ]
    values = rng.integers(0, 256, size=(samples, 2, 1, 3)).astype(np.float64)
    values[:4] = [[[[0, 0, 0]]], [[[255, 255, 255]]], [[[0, 255, 0]]], [[[255, 0, 128]]]]
    return params, values


def test_mixture_equals_tfp_pixel_cnn_mixture_in_float64():
    params, values = _random_and_extreme_pixel(components=5)
    closed_form = likelihoods.DiscretizedLogisticMixture(*params)
    got = closed_form.log_prob((values / 255.0).astype(np.float32)).numpy()  # [40, 2, 1]
    expected = _pixel_cnn_log_prob(*params, values).numpy()  # [40]
    np.testing.assert_allclose(got.sum((1, 2)), expected, rtol=1e-5, atol=1e-3)
    assert got.dtype == np.float32 and np.all(np.isfinite(got))


@pytest.mark.parametrize("compiled", [False, True])
def test_mixture_gradients_equal_tfp_pixel_cnn_autodiff_in_float64(compiled):
    # The mixture's gradient is written in closed form: check it against TFP's, by autodiff.
    params, values = _random_and_extreme_pixel(components=5)
    ours = [tf.Variable(p.astype(np.float32)) for p in params]
    reference = [tf.Variable(p) for p in params]

    def our_log_prob():
        colours = tf.constant((values / 255.0).astype(np.float32))
        return tf.reduce_sum(likelihoods.DiscretizedLogisticMixture(*ours).log_prob(colours))

    with tf.GradientTape() as tape:
        total = tf.function(our_log_prob)() if compiled else our_log_prob()
    got = tape.gradient(total, ours)
    with tf.GradientTape() as tape:
        expected_total = tf.reduce_sum(_pixel_cnn_log_prob(*reference, values))
    expected = tape.gradient(expected_total, reference)
    np.testing.assert_allclose(total.numpy(), expected_total.numpy(), rtol=1e-5)
    for name, g, e in zip(("logits", "locs", "scales", "coefficients"), got, expected, strict=True):
        g, e = g.numpy(), e.numpy()
        assert g.dtype == np.float32 and np.all(np.isfinite(g)), name
        # Gradients span many orders of magnitude (scales at the floor): relative to the largest.
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max(), err_msg=name)


@pytest.mark.parametrize("tape_inside_function", [True, False])
def test_the_decoder_output_kernels_equal_the_mixtures_tf_ops_in_value_and_gradient(
    tape_inside_function,
):
    # The decoder's mixture computes log_prob and its gradient by compiled kernels from its raw
    # output; the parent class (tested against TFP above) by TF ops and autodiff, from the
    # constrained parameters. Raw values span the floor, huge scales and saturated tanh.
    components, rng = 3, np.random.default_rng(11)
    output = rng.normal(size=(4, 5, 6, 10 * components)) * 3.0
    output[0, :, :, 4 * components : 7 * components] = -40.0  # every scale at the floor
    output = tf.Variable(output.astype(np.float32))
    values = rng.integers(0, 256, size=(2, 4, 5, 6, 3)).astype(np.float32)  # [2, ...]: broadcast
    values[:, 1, 0, :] = [
        [0, 0, 0],
        [255, 255, 255],
        [0, 128, 255],
        [255, 0, 3],
        [1, 254, 0],
        [9] * 3,
    ]
    colours = tf.constant(values / 255.0)

    def log_probs():
        fused = likelihoods.make("discretized_logistic_mixture", output, mixture_components=3)
        pixels = fused.distribution
        plain = likelihoods.DiscretizedLogisticMixture(
            pixels.logits, pixels.locs, pixels.scales, pixels.coefficients
        )
        return fused.log_prob(colours), tf.reduce_sum(plain.log_prob(colours), [-1, -2])

    def value_and_gradients():
        with tf.GradientTape(persistent=True) as tape:
            fused, plain = log_probs()
            weighted = [tf.reduce_sum(lp * [[1.0], [-0.5]]) for lp in (fused, plain)]
        return fused, plain, [tape.gradient(w, output) for w in weighted]

    if tape_inside_function:  # as the train step: the forward kernel keeps its terms
        fused, plain, (d_fused, d_plain) = tf.function(value_and_gradients)()
    else:  # a tape around a traced function: the gradient recomputes them
        traced = tf.function(log_probs)
        with tf.GradientTape(persistent=True) as tape:
            fused, plain = traced()
            weighted = [tf.reduce_sum(lp * [[1.0], [-0.5]]) for lp in (fused, plain)]
        d_fused, d_plain = (tape.gradient(w, output) for w in weighted)
    assert fused.shape == [2, 4] and fused.dtype == tf.float32
    np.testing.assert_allclose(fused, plain, rtol=2e-5, atol=1e-3)
    assert np.all(np.isfinite(d_fused)) and np.abs(d_plain).max() > 1
    np.testing.assert_allclose(d_fused, d_plain, rtol=1e-3, atol=1e-4 * np.abs(d_plain).max())


@pytest.mark.parametrize("scale_floor", [likelihoods.DEFAULT_SCALE_FLOOR, 1e-4])
def test_the_decoder_output_kernel_equals_tfp_pixel_cnn_autodiff_at_extreme_raw_outputs(
    scale_floor,
):
    # The compiled kernel's value and gradient with respect to the raw decoder output, against
    # TFP's PixelCNN mixture in float64 differentiated through the same parameterisation
    # (locs + 1/2, softplus(raw - 3) + floor, tanh): scales at the floor and huge, means far
    # outside [0, 1], saturated coefficients and logits, and the edge levels 0, 1, 254, 255.
    components, pixels, rng = 3, 240, np.random.default_rng(5)
    m = components
    raw = np.concatenate(
        [
            rng.choice([-30.0, 0.0, 30.0, 1.5], size=(pixels, m)),  # logits
            rng.choice([-40.0, -0.5, 0.0, 0.2, 0.5, 40.0], size=(pixels, 3 * m)),  # locs - 1/2
            rng.choice([-40.0, -3.0, 0.0, 3.0, 11.0, 40.0], size=(pixels, 3 * m)),  # raw scales
            rng.choice([-12.0, -0.7, 0.0, 0.5, 12.0], size=(pixels, 3 * m)),  # raw coefficients
        ],
        axis=-1,
    )[:, None, None, :]  # [P, 1, 1, 10 M]
    values = rng.choice([0.0, 1.0, 128.0, 254.0, 255.0, 37.0], size=(pixels, 1, 1, 3))
    upstream = rng.uniform(-1.0, 2.0, size=pixels)  # a per-pixel weight on each log P

    output = tf.Variable(raw.astype(np.float32))

    @tf.function
    def kernel():
        with tf.GradientTape() as tape:
            log_prob = likelihoods.make(
                "discretized_logistic_mixture", output, mixture_components=m,
                scale_floor=scale_floor,
            ).log_prob(tf.constant((values / 255.0).astype(np.float32)))  # fmt: skip
            weighted = tf.reduce_sum(log_prob * upstream.astype(np.float32))
        return log_prob, tape.gradient(weighted, output)

    reference_output = tf.Variable(raw)
    with tf.GradientTape() as tape:
        logits, locs, raw_scales, raw_coefficients = tf.split(
            reference_output, [m, 3 * m, 3 * m, 3 * m], -1
        )
        by_component = lambda t: tf.reshape(t, [pixels, 1, 1, m, 3])  # noqa: E731
        expected = _pixel_cnn_log_prob(
            logits,
            by_component(locs) + 0.5,
            tf.nn.softplus(by_component(raw_scales) - 3.0) + scale_floor,
            tf.tanh(by_component(raw_coefficients)),
            values,
        )  # [P]
        expected_weighted = tf.reduce_sum(expected * upstream)
    expected_gradient = tape.gradient(expected_weighted, reference_output).numpy()
    got, gradient = kernel()
    assert got.dtype == tf.float32 and gradient.dtype == tf.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    assert np.all(np.isfinite(gradient)) and np.abs(expected_gradient).max() > 100
    # Each block of parameters against its own largest gradient (they span many magnitudes).
    for block in np.split(np.arange(10 * m), [m, 4 * m, 7 * m]):
        g, e = gradient.numpy()[..., block], expected_gradient[..., block]
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5 * np.abs(e).max() + 1e-6)


def test_mixture_samples_follow_its_probabilities():
    # One pixel, two components with strongly coupled channels and wide bins.
    dist = likelihoods.DiscretizedLogisticMixture(
        [0.0, 1.0], [[0.3, 0.5, 0.4], [0.7, 0.2, 0.9]], [[2e-3] * 3, [3e-3] * 3],
        [[0.9, -0.8, 0.5], [-0.6, 0.7, -1.0]],
    )  # fmt: skip
    samples = dist.sample(40_000, seed=[5, 6]).numpy()  # [40000, 3]
    levels = np.round(samples * 255)
    np.testing.assert_allclose(samples * 255, levels, atol=1e-3)
    colours, counts = np.unique(levels, axis=0, return_counts=True)
    common = counts > 400
    assert common.sum() >= 10 and counts[common].sum() > 0.5 * len(samples)
    probs = np.exp(dist.log_prob(colours[common] / 255.0).numpy())
    frequency = counts[common] / len(samples)
    standard_error = np.sqrt(probs * (1 - probs) / len(samples))
    assert np.all(np.abs(frequency - probs) < 5 * standard_error)


def test_mixture_parameter_layout_and_point_estimate_by_hand():
    components = 2
    logits = [0.0, 4.0]  # component 1 is the most probable
    locs = np.array([[0.9, 0.9, 0.9], [0.2, 0.4, 0.6]]) - 0.5  # the decoder adds 0.5
    raw_coefficients = np.arctanh([[0.0, 0.0, 0.0], [0.5, -0.5, 0.25]])
    params = np.concatenate(
        [logits, locs.ravel(), np.zeros(3 * components), raw_coefficients.ravel()]
    ).reshape(1, 1, 1, 10 * components)
    dist = likelihoods.make("discretized_logistic_mixture", params, mixture_components=components)
    assert dist.event_shape == [1, 1, 3] and dist.batch_shape == [1]
    red = round(0.2 * 255)
    green = round((0.4 + 0.5 * (red / 255 - 0.5)) * 255)
    blue = round((0.6 - 0.5 * (red / 255 - 0.5) + 0.25 * (green / 255 - 0.5)) * 255)
    image = likelihoods.point_estimate(dist).numpy().reshape(3) * 255
    np.testing.assert_allclose(image, [red, green, blue], atol=1e-4)


def test_mixture_gradients_are_finite_at_extreme_parameters():
    params = [tf.Variable(p, dtype=tf.float32) for p in _mixture_params(
        np.random.default_rng(3), 4, extreme=True)]  # fmt: skip
    colours = np.array([[0, 0, 0], [255, 255, 255], [0, 128, 255], [17, 200, 3]]) / 255.0
    with tf.GradientTape() as tape:
        log_prob = likelihoods.DiscretizedLogisticMixture(*params).log_prob(colours)
    assert np.all(np.isfinite(log_prob))
    assert all(np.all(np.isfinite(g)) for g in tape.gradient(log_prob, params))


def test_mixture_needs_rgb_and_ten_channels_per_component():
    assert likelihoods.parameter_channels("discretized_logistic_mixture") == 100
    assert (
        likelihoods.parameter_channels("discretized_logistic_mixture", mixture_components=3) == 30
    )
    with pytest.raises(ValueError, match="needs 3 channels"):
        likelihoods.parameter_channels("discretized_logistic_mixture", channels=1)


def test_a_vae_with_the_mixture_builds_scores_and_displays(tiny_config):
    from tfvae.models import vae as model

    config = tiny_config.replace(likelihood="discretized_logistic_mixture", mixture_components=3)
    vae = model.build(config, "mixed_bfloat16")
    assert vae.decoder.blocks[-1].filters == 30  # 10 parameters per component
    x = tf.round(tf.random.stateless_uniform([2, 16, 16, 3], [0, 1]) * 255) / 255
    log_w = vae.log_weights(x, 4, seed=[1, 1])
    assert log_w.shape == [4, 2] and log_w.dtype == tf.float32 and np.all(np.isfinite(log_w))
    images = vae.sample(3, seed=[2, 2]).numpy()
    assert images.shape == (3, 16, 16, 3) and np.all((images >= 0) & (images <= 1))
    np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-3)  # on the grid


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "discretized_logistic_mixture"])
@pytest.mark.parametrize("floor", [1e-3, 4.5e-4])
def test_a_sharp_prediction_reaches_the_bound_its_scale_floor_sets(likelihood, floor):
    # A logistic centred on an inner level with the smallest scale s gives that level the
    # probability sigmoid(1 / 510 s) - sigmoid(-1 / 510 s) (levels 1/255 apart) in each channel.
    level = np.array([37.0, 128.0, 201.0]) / 255.0  # a pixel's channels, inner levels
    if likelihood == "discretized_logistic":
        params = np.concatenate([level - 0.5, np.full(3, -60.0)])  # loc, raw scale -> floor
    else:  # one component: logit, 3 locations, 3 scales at the floor, 3 coefficients 0
        params = np.concatenate([[0.0], level - 0.5, np.full(3, -60.0), np.zeros(3)])
    params = tf.constant(np.broadcast_to(params, [1, 2, 2, len(params)]), tf.float32)
    dist = likelihoods.make(likelihood, params, mixture_components=1, scale_floor=floor)
    x = tf.constant(np.broadcast_to(level, [1, 2, 2, 3]), tf.float32)
    half_level = 1.0 / (2 * 255.0 * floor)
    expected = 12 * np.log(1 / (1 + np.exp(-half_level)) - 1 / (1 + np.exp(half_level)))
    np.testing.assert_allclose(dist.log_prob(x), [expected], rtol=1e-5)
    bits = -expected / (12 * np.log(2))
    assert bits == pytest.approx({1e-3: 0.409, 4.5e-4: 0.037}[floor], abs=1e-3)


@pytest.mark.parametrize("kind", ["discretized_logistic", "discretized_logistic_mixture"])
def test_channel_tables_sum_to_one_and_multiply_to_the_log_prob(kind):
    """What a coder codes pixels with: each channel's 256 probabilities given the channels
    before it; their product over channels is the likelihood of the pixels."""
    rng = np.random.default_rng(0)
    channels = likelihoods.parameter_channels(kind, mixture_components=3)
    params = tf.constant(rng.normal(0, 1, [2, 4, 4, channels]), tf.float32)
    distribution = likelihoods.make(kind, params, mixture_components=3)
    level = rng.integers(0, 256, [2, 4, 4, 3]).astype(np.float32)
    total = 0.0
    for channel in range(3):
        known = level.copy()
        known[..., channel:] = 0.0  # only the channels before are read
        table = likelihoods.channel_log_probs(distribution, channel, known).numpy()
        np.testing.assert_allclose(np.exp(table).sum(-1), 1.0, atol=2e-6)
        total += np.take_along_axis(table, level[..., channel, None].astype(int), -1)[..., 0]
    np.testing.assert_allclose(
        total.sum((1, 2)), distribution.log_prob(level / 255.0), rtol=1e-5, atol=1e-3
    )
    with pytest.raises(ValueError, match="only the discrete likelihoods"):
        likelihoods.channel_log_probs(likelihoods.make("bernoulli", params[..., :3]), 0)
