"""tfvae: variational auto-encoders (VAE, IWAE) on images with TensorFlow 2, Keras 3 and TFP.

The contracts notebooks rely on are importable from here (docs/api.md); they load lazily, so
`import tfvae` and the TensorFlow-free rooms (runtime, experiments) do not start TensorFlow:

  tfvae.Config, tfvae.load_dataset, tfvae.VAE, tfvae.build, tfvae.restore, tfvae.elbo,
  tfvae.iwae_bound, tfvae.log_likelihood, tfvae.bits_per_dim
"""

import importlib
import os

# Quiet TensorFlow's C++ start-up messages unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_CONTRACTS = {  # public name -> (module, attribute)
    "Config": ("tfvae.config", "Config"),
    "load_dataset": ("tfvae.data", "load"),
    "VAE": ("tfvae.models.vae", "VAE"),
    "build": ("tfvae.models.vae", "build"),
    "restore": ("tfvae.models.vae", "restore"),
    "elbo": ("tfvae.models.objectives", "elbo"),
    "iwae_bound": ("tfvae.models.objectives", "iwae_bound"),
    "log_likelihood": ("tfvae.evaluation.bounds", "log_likelihood"),
    "bits_per_dim": ("tfvae.evaluation.units", "bits_per_dim"),
}
__all__ = sorted(_CONTRACTS)


def __getattr__(name: str):
    if name in _CONTRACTS:
        module, attribute = _CONTRACTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'tfvae' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
