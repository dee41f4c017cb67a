"""Densities fitted to a trained model's latent codes, sampled instead of the prior; the
aggregate posterior's moment-matched Gaussian (gaussian) is the first."""
