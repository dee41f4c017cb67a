"""Prior samples at a temperature: z ~ N(0, T^2 I)."""

import numpy as np
import pytest

from tfvae import config as config_lib
from tfvae import model


def test_temperature_scales_prior_draws(tiny_config):
    vae = model.build(tiny_config)
    eps = vae.prior.sample(4, seed=[5, 6])
    np.testing.assert_array_equal(
        vae.sample(4, seed=[5, 6], temperature=0.5), vae.sample(z=0.5 * eps)
    )
    with pytest.raises(ValueError, match="`temperature` is 0"):
        vae.sample(4, temperature=0.0)
    with pytest.raises(ValueError, match="applies to prior draws"):
        vae.sample(z=eps, temperature=0.7)
    with pytest.raises(ValueError, match="`--sample_temperature` is -1"):
        tiny_config.replace(sample_temperature=-1.0)
    assert not config_lib.differences(tiny_config, tiny_config.replace(sample_temperature=0.7))
