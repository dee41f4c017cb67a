"""The model: encoder and decoder networks, pixel likelihoods, the VAE with its prior, and the
objectives (ELBO, IWAE bound) over its [K, B] log-weights. Imports no training code."""
