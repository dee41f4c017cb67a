"""Densities fitted to a trained model's latent codes, sampled instead of the prior: the
aggregate posterior's moment-matched Gaussian, a Gaussian mixture and a flow (store.py saves and
loads them under MODEL_DIR/samplers/)."""

KINDS = ("gaussian", "gmm", "flow")  # here so that the commands name them without TensorFlow
