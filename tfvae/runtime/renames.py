"""Keyword arguments renamed in the library: the old name still works, with a warning, for one
release (e.g. `num_samples=` -> `k=`, `size=` -> `num_images=`)."""

from __future__ import annotations

import warnings


def renamed_argument(old_name: str, old_value, new_name: str, new_value, default):
    """The value of a renamed keyword: `new_value`, or `old_value` (not None) with a
    DeprecationWarning. Raises TypeError (one line) when both are given and differ."""
    if old_value is None:
        return new_value
    warnings.warn(
        f"`{old_name}=` is deprecated (removed in the next release); pass `{new_name}=`.",
        DeprecationWarning,
        stacklevel=3,
    )
    if new_value != default and new_value != old_value:
        raise TypeError(
            f"Give `{new_name}` only; got {new_name}={new_value} and {old_name}={old_value}."
        )
    return old_value
