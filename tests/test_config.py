import dataclasses
import json

import pytest
from absl import flags

from tfvae import config as config_lib


def test_defaults_are_the_reports_hyper_parameters():
    c = config_lib.Config()
    assert (c.batch_size, c.epochs, c.learning_rate, c.beta_1, c.k) == (128, 200, 2e-4, 0.5, 5)
    assert (c.image_size, c.width, c.latent_dim, c.num_stages) == (64, 64, 128, 4)


def test_json_round_trip(tmp_path):
    c = config_lib.Config(k=3, upsampling="bilinear", gaussian_scale=0.1, jit_compile=True)
    config_lib.save(c, str(tmp_path / "config.json"))
    assert config_lib.load(str(tmp_path / "config.json")) == c
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]  # no temporary file left


def test_a_config_saved_before_a_default_changed_keeps_the_value_it_trained_with(tmp_path):
    path = tmp_path / "config.json"
    config_lib.save(config_lib.Config(likelihood="discretized_logistic_mixture"), str(path))
    saved = json.loads(path.read_text())
    assert saved["likelihood_scale_floor"] == 4.5e-4
    for name in config_lib.LEGACY_VALUES:  # as written before these fields or defaults existed
        del saved[name]
    path.write_text(json.dumps(saved))
    restored = config_lib.load(str(path))
    assert restored.likelihood_scale_floor == 1e-3
    assert config_lib.differences(restored, config_lib.Config(likelihood=restored.likelihood)) == [
        "likelihood_scale_floor: 0.001 (saved) vs 0.00045 (requested)"
    ]


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(k=0), "`--k` is 0; it must be an integer >= 1"),
        (dict(upsampling="pixelshuffle"), "`--upsampling` is 'pixelshuffle'; accepted: deconv"),
        (dict(likelihood="poisson"), "accepted: bernoulli, gaussian, discretized_logistic"),
        (dict(image_size=48), "`--image_size` is 48; it must be a power of two >= 8"),
        (dict(image_size=4), "`--image_size` is 4"),
        (dict(beta_1=1.0), "`--beta_1` is 1.0; it must be in"),
        (dict(learning_rate=0.0), "`--learning_rate` is 0.0"),
        (dict(dataset="imagenet"), "accepted: builtin, celeb_a, folder:PATH"),
        (dict(mixed_precision="float64"), "accepted: auto, float32, mixed_float16"),
        (dict(strategy="ps"), "`--strategy` is 'ps'; accepted: auto, default, mirrored, multi"),
        (dict(collective_timeout_s=0), "`--collective_timeout_s` is 0; it must be an integer"),
        (dict(mixture_head_channels=-1), "`--mixture_head_channels` is -1; it must be >= 0"),
    ],
)
def test_each_invalid_value_is_one_line_naming_it(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        config_lib.Config(**changes)
    assert "\n" not in str(error.value)


def test_flags_cover_every_field_with_help_and_build_the_config():
    values = flags.FlagValues()
    config_lib.define_flags(values)
    values(["prog", "--k=1", "--upsampling=nearest", "--jit_compile", "--learning_rate=0.001"])
    for field in dataclasses.fields(config_lib.Config):
        assert values[field.name].help and values[field.name].default == field.default
    assert config_lib.from_flags(values) == config_lib.Config(
        k=1, upsampling="nearest", jit_compile=True, learning_rate=0.001
    )


def test_differences_ignore_run_control_fields():
    saved = config_lib.Config()
    resumed = saved.replace(epochs=300, log_every_steps=5, collective_timeout_s=60)
    assert config_lib.differences(saved, resumed) == []
    assert config_lib.differences(saved, saved.replace(k=1, width=32)) == [
        "width: 64 (saved) vs 32 (requested)",
        "k: 5 (saved) vs 1 (requested)",
    ]


def test_num_dims_is_h_w_c_and_neither_saved_nor_a_flag(tmp_path):
    config = config_lib.Config(image_size=16)
    assert config.num_dims == 16 * 16 * 3
    assert "num_dims" not in config.to_dict()
    config_lib.save(config, str(tmp_path / "config.json"))
    assert "num_dims" not in json.loads((tmp_path / "config.json").read_text())
    assert config_lib.load(str(tmp_path / "config.json")).num_dims == 768
    values = flags.FlagValues()
    config_lib.define_flags(values)
    assert "num_dims" not in values
