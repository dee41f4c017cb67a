"""tfvae: variational auto-encoders (VAE, IWAE) on images with TensorFlow 2, Keras 3 and TFP."""

import os

# Quiet TensorFlow's C++ start-up messages unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
