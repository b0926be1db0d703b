"""Weighted isotonic regression, and losses made monotone in the confidence bin with it (the book's chapter *Early exit on real models*)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_numbers, describe_value, short_repr


def isotonic(y: Any, w: Any) -> np.ndarray:
    """Weighted least-squares non-increasing fit of ``y`` (pool-adjacent-violators).

    Raises
    ------
    TTamerError
        For ``y`` and ``w`` that are not non-empty 1-D arrays of finite numbers of the same
        length, ``w`` all ``> 0``.
    """
    y = check_numbers(y, "y")
    w = check_numbers(w, "w", low=0.0)
    if len(w) != len(y):
        raise TTamerError(f"w has {len(w):,} values, y {len(y):,}: one weight per value")
    if not w.all():
        raise TTamerError(f"w[{int(np.argmin(w))}] is 0; every weight must be > 0")
    return _pool_adjacent_violators(y, w)


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`isotonic` of checked arrays."""
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist()):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            size = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v, wsum, size
    return np.repeat(vals, sizes)


def _checked_layout(layout: Any, ell: Any, weight: Any) -> tuple[int, int, int]:
    """``layout`` as ``(A, F, R)`` of positive integers whose product is the length of the
    1-D float arrays ``ell`` and ``weight``, else a :class:`~ttamer.core.errors.TTamerError`."""
    ok = isinstance(layout, tuple) and len(layout) == 3 and all(isinstance(k, (int, np.integer)) and k >= 1
                                                                  for k in layout)
    size = int(np.prod(layout)) if ok else -1
    for name, arr in (("ell", ell), ("weight", weight)):
        if not (isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind == "f" and len(arr) == size):
            raise TTamerError(f"monotone_losses: layout must be (A, F, R), positive integers, and {name} a 1-D float "
                              f"array of A*F*R values; got layout {short_repr(layout)} and {name} "
                              f"{describe_value(arr)}")
    return int(layout[0]), int(layout[1]), int(layout[2])


def monotone_losses(ell: np.ndarray, weight: np.ndarray, layout: tuple[int, int, int],
                    decreasing: bool) -> np.ndarray:
    """Make ``ℓ`` monotone along the confidence-bin axis: ``ell`` viewed as ``[A, F, R]``
    (agreement level, feature bin, other axes) is fitted by weighted isotonic regression along
    ``F`` for every ``(a, r)``, non-increasing (``decreasing``: more confidence, fewer
    errors) or non-decreasing (entropy)."""
    A, F, R = _checked_layout(layout, ell, weight)
    e, wt = ell.reshape(A, F, R), weight.reshape(A, F, R)
    out = np.empty_like(e)
    for a in range(A):
        for r in range(R):
            col, cw = e[a, :, r], wt[a, :, r]
            out[a, :, r] = (_pool_adjacent_violators(col, cw) if decreasing
                            else _pool_adjacent_violators(col[::-1], cw[::-1])[::-1])
    return out.reshape(-1)
