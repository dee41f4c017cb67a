"""A trained run as a SavedModel of plain tensors with encode, decode, reconstruct, sample and
log_likelihood signatures, loadable with TensorFlow alone."""
