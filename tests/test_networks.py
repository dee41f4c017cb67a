import numpy as np
import pytest
import tensorflow as tf

from tfvae import config as config_lib
from tfvae.models import networks
from tfvae.models import vae as model


@pytest.mark.parametrize("upsampling", ["deconv", "nearest", "bilinear"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "discretized_logistic"])
def test_shapes_of_every_upsampling_and_likelihood(upsampling, likelihood):
    config = config_lib.Config(
        image_size=16, width=4, latent_dim=3, upsampling=upsampling, likelihood=likelihood
    )
    vae = model.build(config)
    q = vae.encode(tf.zeros([2, 16, 16, 3]))
    assert q.batch_shape == [2] and q.event_shape == [3]
    p = vae.decode(tf.zeros([5, 3]))
    assert p.batch_shape == [5] and p.event_shape == [16, 16, 3]
    assert vae.sample(4, seed=[0, 1]).shape == [4, 16, 16, 3]
    assert vae.log_weights(tf.zeros([2, 16, 16, 3]), 3, seed=[0, 1]).shape == [3, 2]


def test_the_three_decoders_have_the_same_stages_and_parameter_count():
    counts = set()
    for upsampling in ("deconv", "nearest", "bilinear"):
        decoder = networks.Decoder(width=8, num_stages=3, kernel_size=3, upsampling=upsampling)
        p = decoder(tf.zeros([1, 16]))
        assert p.event_shape == [32, 32, 3]
        counts.add(decoder.count_params())
    assert len(counts) == 1


@pytest.mark.parametrize("head", [0, 5])
def test_the_mixture_head_maps_a_narrow_full_resolution_map_to_its_parameters(head):
    decoder = networks.Decoder(
        width=8, num_stages=3, kernel_size=3, likelihood="discretized_logistic_mixture",
        mixture_components=2, mixture_head_channels=head,
    )  # fmt: skip
    p = decoder(tf.zeros([1, 16]))
    assert p.event_shape == [32, 32, 3]
    last = decoder.blocks[-1]  # [16, 16, 8] -> [32, 32, head or 20]
    assert last.filters == (head or 20) and last.use_bias == (not head)
    if head:  # then batch norm, ReLU and a 1x1 convolution to the 10 M = 20 parameters
        assert decoder.head.kernel.shape == (1, 1, head, 20) and len(decoder.norms) == 3
        assert decoder.count_params() - _direct_mixture_decoder_weights() == (
            3 * 3 * 8 * (head - 20) - 20  # the last block's kernel, narrower, without bias
            + 4 * head  # batch norm: gamma, beta and the two moving statistics
            + head * 20 + 20  # the 1x1 convolution and its bias
        )  # fmt: skip
    else:
        assert decoder.head is None and len(decoder.norms) == 2
    logistic = networks.Decoder(width=8, num_stages=3, mixture_head_channels=5)
    logistic(tf.zeros([1, 16]))
    assert logistic.head is None and logistic.blocks[-1].filters == 6  # only the mixture's


def _direct_mixture_decoder_weights():
    decoder = networks.Decoder(
        width=8, num_stages=3, kernel_size=3, likelihood="discretized_logistic_mixture",
        mixture_components=2, mixture_head_channels=0,
    )  # fmt: skip
    decoder(tf.zeros([1, 16]))
    return decoder.count_params()


def test_encoder_downsamples_to_4x4_and_posterior_scale_has_a_floor():
    encoder = networks.Encoder(latent_dim=5, width=4, num_stages=4, scale_floor=0.01)
    q = encoder(tf.random.stateless_uniform([3, 64, 64, 3], [0, 0]))
    assert [c.filters for c in encoder.convs] == [4, 8, 16, 32]
    assert np.all(q.stddev().numpy() >= 0.01)


@pytest.mark.parametrize("dtype", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_layers_give_float32_distributions(dtype):
    config = config_lib.Config(image_size=8, width=4, latent_dim=2)
    vae = model.build(config, dtype=dtype)
    assert vae.encoder.convs[0].compute_dtype != "float32"
    assert vae.encoder.convs[0].variable_dtype == "float32"
    log_w = vae.log_weights(tf.fill([2, 8, 8, 3], 0.5), 2, seed=[0, 0])
    assert log_w.dtype == tf.float32 and np.all(np.isfinite(log_w))


def test_unknown_upsampling_is_one_clear_error():
    with pytest.raises(ValueError, match="'pixelshuffle' is unknown; accepted: deconv"):
        networks.Decoder(upsampling="pixelshuffle")


@pytest.mark.parametrize("upsampling", ["deconv", "bilinear"])
def test_a_checkpoint_restores_every_weight_including_batch_norm_statistics(upsampling, tmp_path):
    config = config_lib.Config(image_size=16, width=4, latent_dim=3, upsampling=upsampling)
    saved = model.build(config)
    for variable in saved.weights:
        variable.assign(tf.random.stateless_normal(variable.shape, [len(variable.path), 1]))
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    restored = model.build(config)
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
    assert len(restored.weights) == len(saved.weights) > 0
    for a, b in zip(saved.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("synchronized", [False, True])
def test_batch_norm_normalises_and_tracks_biased_statistics(synchronized):
    x = tf.random.stateless_normal([4, 3, 3, 2], [0, 9]) * [2.0, 0.5] + [1.0, -3.0]
    norm = networks.BatchNorm(momentum=0.0, epsilon=1e-7, synchronized=synchronized)
    y = norm(x, training=True)
    np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), [0, 0], atol=1e-5)
    np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), [1, 1], rtol=1e-3)
    # momentum 0: the moving statistics are this batch's mean and biased variance.
    np.testing.assert_allclose(norm.moving_mean, tf.reduce_mean(x, [0, 1, 2]), rtol=1e-5)
    np.testing.assert_allclose(
        norm.moving_variance, tf.math.reduce_variance(x, [0, 1, 2]), rtol=1e-5
    )
    np.testing.assert_allclose(norm(x, training=False), y, atol=1e-4)  # inference uses them


def _dcgan_forward_flops_by_hand(config, parameter_channels, k):
    """The DCGAN model's multiply-adds x 2 for one image, layer by layer from its definition:
    encoder convolutions per output pixel, transposed convolutions per input pixel,
    resize-convolutions per output pixel, the dense layers, the mixture's 1x1 head."""
    size, kernel = config.image_size, config.kernel_size
    flops, channels = 0, 3
    for stage in range(config.num_stages):
        out = config.width * 2**stage
        flops += 2 * (size // 2 ** (stage + 1)) ** 2 * kernel**2 * channels * out
        channels = out
    encoder = flops + 2 * 16 * channels * 2 * config.latent_dim
    mixture = config.likelihood == "discretized_logistic_mixture"
    head = config.mixture_head_channels if mixture else 0
    decoder = 2 * config.latent_dim * 16 * channels
    for stage in reversed(range(config.num_stages)):
        out = config.width * 2 ** (stage - 1) if stage else head or parameter_channels
        side = size // 2 ** (stage + 1)
        pixels = side**2 if config.upsampling == "deconv" else (2 * side) ** 2
        decoder += 2 * pixels * kernel**2 * channels * out
        channels = out
    decoder += 2 * size**2 * head * parameter_channels
    return encoder + k * decoder


@pytest.mark.parametrize(
    "upsampling,likelihood,head",
    [
        ("deconv", "discretized_logistic", 32),
        ("bilinear", "discretized_logistic", 32),
        ("deconv", "discretized_logistic_mixture", 0),
        ("nearest", "discretized_logistic_mixture", 7),
    ],
)
def test_the_benchmarks_flop_count_from_the_graph_equals_the_dcgan_count_by_hand(
    upsampling, likelihood, head
):
    from tfvae.experiments import benchmark
    from tfvae.models import likelihoods

    config = config_lib.Config(
        image_size=16, width=4, latent_dim=3, kernel_size=3, upsampling=upsampling,
        likelihood=likelihood, mixture_components=2, mixture_head_channels=head,
    )  # fmt: skip
    channels = likelihoods.parameter_channels(likelihood, mixture_components=2)
    expected = _dcgan_forward_flops_by_hand(config, channels, k=3)
    assert benchmark.forward_flops(model.build(config), 16, k=3) == expected


def test_the_benchmark_times_a_run_with_a_cosine_learning_rate_schedule():
    # The cosine schedule needs a run's length, which a benchmark has not got: it is given a
    # nominal one, starting at the configured rate, and the timed step runs.
    from tfvae.experiments import benchmark
    from tfvae.training import steps as steps_lib

    config = config_lib.Config(
        image_size=16, width=4, latent_dim=3, k=2, batch_size=4, learning_rate=0.003,
        learning_rate_schedule="cosine",
    )  # fmt: skip
    with pytest.raises(ValueError, match="needs the run's length"):
        steps_lib.Steps(config, tf.distribute.get_strategy())
    steps = benchmark.timed_steps(config)
    assert steps_lib.learning_rate_at(steps.learning_rate, 0) == pytest.approx(0.003)
    assert benchmark.train_images_per_second(steps, 4, repeats=1, warmup=1) > 0
