"""Log-likelihood estimates and their units.

bits/dim counts every dimension D = H * W * C:
- 'discrete': log p(x) is a probability over the 256 values of each channel;
  bits/dim = NLL / (D ln 2).
- 'density': log p(x) is a density on [0, 1]^D; with uniform dequantization the discrete
  likelihood of the 8-bit data is at least p(x) / 256^D, so bits/dim = (NLL + D ln 256) / (D ln 2).
- 'report': the convention of the report this package grew from, NLL log2(e) / (H W), per pixel
  rather than per dimension and without the dequantization term; shown only for comparison.
A Bernoulli likelihood on non-binary pixels gives no likelihood of the data: no bits/dim.
"""

from __future__ import annotations

import math

import numpy as np

CONVENTIONS = ("discrete", "density", "report")


def bits_per_dim(nll_nats, num_dims: int, convention: str, num_pixels: int | None = None):
    """Converts negative log-likelihoods in nats per example to bits.

    Args:
      nll_nats: float or array [B], -log p(x) in nats per example.
      num_dims: D = H * W * C.
      convention: 'discrete', 'density' or 'report' (see the module docstring).
      num_pixels: H * W, needed by 'report'.

    Returns:
      Bits per dimension ('report': bits per pixel), same shape as nll_nats.
    """
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


def convention_for(likelihood: str) -> str | None:
    """The honest bits/dim convention of a pixel likelihood, or None (Bernoulli on 8-bit data)."""
    return {"discretized_logistic": "discrete", "gaussian": "density"}.get(likelihood)
