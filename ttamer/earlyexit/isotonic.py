"""Weighted isotonic regression, and losses made monotone in the confidence bin with it (the book's chapter *Early exit on real models*)."""

from __future__ import annotations

import numpy as np


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing fit of ``y`` (pool-adjacent-violators)."""
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


def monotone_losses(ell: np.ndarray, weight: np.ndarray, layout: tuple[int, int, int],
                    decreasing: bool) -> np.ndarray:
    """Make ``ℓ`` monotone along the confidence-bin axis: ``ell`` viewed as ``[A, F, R]``
    (agreement level, feature bin, other axes) is fitted by weighted isotonic regression along
    ``F`` for every ``(a, r)``, non-increasing (``decreasing``: more confidence, fewer
    errors) or non-decreasing (entropy)."""
    A, F, R = layout
    e, wt = ell.reshape(A, F, R), weight.reshape(A, F, R)
    out = np.empty_like(e)
    for a in range(A):
        for r in range(R):
            col, cw = e[a, :, r], wt[a, :, r]
            out[a, :, r] = isotonic(col, cw) if decreasing else isotonic(col[::-1], cw[::-1])[::-1]
    return out.reshape(-1)


