"""bits/dim from negative log-likelihoods in nats, and which convention a likelihood gets.

bits/dim counts every dimension D = H * W * C:
- 'discrete': log p(x) is a probability over the 256 values of each channel;
  bits/dim = NLL / (D ln 2).
- 'density': log p(x) is a density on [0, 1]^D, scored at uniformly dequantized pixels
  (v + u) / 256 (see `bounds.bounds`), so -log P(v) <= NLL + D ln 256 in expectation and
  bits/dim = (NLL + D ln 256) / (D ln 2) bounds the discrete NLL.
- 'report': the convention of the report this package grew from, NLL log2(e) / (H W), per pixel
  rather than per dimension and without the dequantization term; shown only for comparison.
A Bernoulli likelihood on non-binary pixels gives no likelihood of the data: no bits/dim
(`convention_or_none` is the one rule every caller asks). Importing this module starts no
TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np

CONVENTIONS = ("discrete", "density", "report")
BITS_PER_DIM_CONVENTIONS = {
    "discrete": "NLL / (D ln 2), D = H*W*C: a probability over the 256 pixel values",
    "density": "(NLL + D ln 256) / (D ln 2): a density on [0,1], uniform dequantization",
}
_LIKELIHOOD_CONVENTIONS = {
    "discretized_logistic": "discrete",
    "discretized_logistic_mixture": "discrete",
    "gaussian": "density",
}


def bits_per_dim(nll_nats, num_dims: int, convention: str, num_pixels: int | None = None):
    """Converts negative log-likelihoods in nats per example to bits.

    Args:
      nll_nats: float, array or tensor [B], -log p(x) in nats per example.
      num_dims: D = H * W * C.
      convention: 'discrete', 'density' or 'report' (see the module docstring).
      num_pixels: H * W, needed by 'report'.

    Returns:
      Bits per dimension ('report': bits per pixel), same shape as nll_nats.
    """
    if not _is_tensor(nll_nats):  # a float32 tensor stays one (graph use, e.g. an export)
        nll_nats = np.asarray(nll_nats, np.float64)
    if convention == "discrete":
        return nll_nats / (num_dims * math.log(2))
    if convention == "density":
        return (nll_nats + num_dims * math.log(256)) / (num_dims * math.log(2))
    if convention == "report":
        if not num_pixels:
            raise ValueError("Convention 'report' needs `num_pixels` (H * W); got none.")
        return nll_nats * math.log2(math.e) / num_pixels
    raise ValueError(f"Convention {convention!r} is unknown; accepted: {', '.join(CONVENTIONS)}.")


def _is_tensor(value) -> bool:
    """A TensorFlow tensor (TensorFlow is imported only when one can exist)."""
    if not type(value).__module__.startswith("tensorflow"):
        return False
    import tensorflow as tf

    return tf.is_tensor(value)


def _no_bits_per_dim(likelihood: str) -> str:
    """The one line saying why `likelihood` gets no bits/dim."""
    return (
        f"Likelihood {likelihood!r} gives no bits/dim: a Bernoulli on 8-bit pixels is a "
        "cross-entropy, not a likelihood of the data; accepted: "
        f"{', '.join(_LIKELIHOOD_CONVENTIONS)}."
    )


def convention_for(likelihood: str) -> str:
    """The honest bits/dim convention of a pixel likelihood; ValueError for Bernoulli."""
    if likelihood not in _LIKELIHOOD_CONVENTIONS:
        raise ValueError(_no_bits_per_dim(likelihood))
    return _LIKELIHOOD_CONVENTIONS[likelihood]


def convention_or_none(likelihood: str) -> str | None:
    """`convention_for(likelihood)`, or None where it gives no bits/dim (Bernoulli): the one
    rule for whether a run has bits/dim."""
    return _LIKELIHOOD_CONVENTIONS.get(likelihood)


def describe_convention(likelihood: str) -> str:
    """The convention's formula in words (BITS_PER_DIM_CONVENTIONS), or why there is none."""
    convention = convention_or_none(likelihood)
    return BITS_PER_DIM_CONVENTIONS[convention] if convention else _no_bits_per_dim(likelihood)
