"""Shared checks of the arguments every public entry point takes (λ, seeds, counts, fractions,
flags) and terminal-safe text.

Each check returns the value in its canonical type or raises a :class:`~ttamer.core.errors.TTamerError`
naming the argument. Nothing is coerced: ``"0.5"``, ``True`` or ``1.7`` is never taken for a
number, a flag or an index. These are the one place λ, seeds and fractions are validated;
``solve``, ``simulate``, the traces and the command line all call them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import TTamerError

#: Fewest examples a calibration/test split may leave on either side.
MIN_SPLIT_EXAMPLES = 20


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a one-line message, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not replace the real error
        text = f"<{type(value).__name__}>"
    if _is_int(value) and len(text) > limit:
        return f"<an integer with {len(text.lstrip('-'))} digits>"
    text = escape_text(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a one-line message: escaped and cut to ``limit`` characters, an
    integer of more than ``limit`` digits described as such. Never raises."""
    if _is_int(value) and abs(value) >= 10**limit:
        return f"<an integer of more than {limit} digits>"
    return _short(value, limit)


def describe_value(value: Any) -> str:
    """What ``value`` is, for a message: an array by its shape and dtype, anything else by its
    short ``repr``."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {list(value.shape)}, dtype {value.dtype}"
    return short_repr(value)


def check_real(value: Any, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the given bounds, or a :class:`~ttamer.core.errors.TTamerError` naming
    ``name``. Booleans and strings are refused, not converted."""
    if not _is_real(value):
        raise TTamerError(f"{name} must be a number, got {_short(value)}")
    try:
        out = float(value)
    except (OverflowError, ValueError):
        raise TTamerError(f"{name} is out of range, got {_short(value)}") from None
    if not math.isfinite(out):
        raise TTamerError(f"{name} must be finite, got {out}")
    if low is not None and (out <= low if low_open else out < low):
        raise TTamerError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {out:g}")
    if high is not None and (out >= high if high_open else out > high):
        raise TTamerError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {out:g}")
    return out


def check_lam(lam: Any, name: str = "lam") -> float:
    """The trade-off weight λ as a float in [0, 1] (the book's chapter *The model*)."""
    if not _is_real(lam):
        raise TTamerError(f"{name} must be a number in [0, 1], got {_short(lam)}")
    try:
        out = float(lam)
    except (OverflowError, ValueError):
        out = float("inf")
    if not (math.isfinite(out) and 0.0 <= out <= 1.0):
        raise TTamerError(f"{name} must be in [0, 1], got {_short(lam) if out == float('inf') else out}")
    return out + 0.0  # -0.0 is 0.0 (else printed as "λ=-0")


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int (NumPy integers accepted; bools, floats and strings refused)."""
    if not _is_int(value):
        raise TTamerError(f"{name} must be an integer, got {_short(value)}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise TTamerError(f"{name} must be >= {minimum}, got {_short(out)}")
    if maximum is not None and out > maximum:
        raise TTamerError(f"{name} must be <= {maximum}, got {_short(out)}")
    return out


def check_seed(seed: Any, name: str = "seed", *, allow_generator: bool = False) -> Any:
    """A seed: a non-negative integer (or, with ``allow_generator``, a ``numpy.random.Generator``)."""
    if allow_generator and isinstance(seed, np.random.Generator):
        return seed
    return check_int(seed, name, minimum=0, maximum=2**128 - 1)


def check_count(n: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """A count (``n`` samples, replicates...): an integer ``>= minimum``."""
    return check_int(n, name, minimum=minimum, maximum=maximum)


def check_bool(value: Any, name: str) -> bool:
    """A flag: ``True``/``False`` only (``"no"`` or ``0`` is not a flag)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TTamerError(f"{name} must be True or False, got {_short(value)}")
    return bool(value)


def check_fraction(fraction: Any, name: str = "calibration fraction", n: int | None = None,
                   min_each: int = MIN_SPLIT_EXAMPLES) -> float:
    """A split fraction in (0, 1). With ``n`` (examples to split), ``round(fraction·n)`` and the
    rest must each hold at least ``min_each`` examples."""
    f = check_real(fraction, name, low=0.0, high=1.0, low_open=True, high_open=True)
    if n is not None:
        k = round(f * n)
        if k < min_each or n - k < min_each:
            raise TTamerError(
                f"{name} {f:g} of {n} examples leaves {k} calibration and {n - k} test examples; "
                f"each side needs at least {min_each} (MIN_SPLIT_EXAMPLES)")
    return f


# ------------------------------------------------------------------------------- terminal text
def _array(values: Any, name: str, what: str, kinds: str, ndim: int | None, max_len: int | None,
           empty: bool = False) -> np.ndarray:
    """``values`` as an array of dtype kind in ``kinds`` (booleans, strings and objects refused)
    and ``ndim`` dimensions, non-empty (unless ``empty``) and at most ``max_len`` long, else a
    :class:`~ttamer.core.errors.TTamerError` naming ``name`` and saying ``what`` is allowed."""
    try:
        arr = None if isinstance(values, (str, bytes)) else np.asarray(values)
    except (TypeError, ValueError):  # ragged nesting
        arr = None
    if arr is None or (arr.size and arr.dtype.kind not in kinds) or (ndim is not None and arr.ndim != ndim) or \
            (arr.size == 0 and not empty):
        raise TTamerError(f"{name} must be {what}, got {short_repr(values)}")
    if max_len is not None and len(arr) > max_len:
        raise TTamerError(f"{name} has {len(arr):,} values; at most {max_len:,} are allowed")
    return arr


def check_numbers(values: Any, name: str, *, ndim: int | None = 1, low: float | None = None,
                  high: float | None = None, infinite: bool = False, max_len: int | None = None,
                  empty: bool = False) -> np.ndarray:
    """``values`` as a float array of ``ndim`` dimensions (any with ``None``), non-empty unless
    ``empty``, of at most ``max_len`` rows, every value within ``[low, high]``, never ``nan``
    and (unless ``infinite``) finite. Vectorised: one pass over the values.

    Raises
    ------
    TTamerError
        Naming ``name``, for booleans, strings, an empty or ragged array, the wrong number
        of dimensions, too many rows, ``nan``, ``±inf`` (unless ``infinite``) or a value out
        of range.
    """
    rng = "" if low is None and high is None else f" in [{-np.inf if low is None else low:g}, " \
                                                   f"{np.inf if high is None else high:g}]"
    shape = "" if ndim is None else f"{ndim}-D "
    what = f"a {'' if empty else 'non-empty '}{shape}array of {'' if infinite else 'finite '}numbers{rng}"
    arr = _array(values, name, what, "iuf", ndim, max_len, empty).astype(float, copy=False)
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    bad = ~((arr >= lo) & (arr <= hi)) if infinite else ~(np.isfinite(arr) & (arr >= lo) & (arr <= hi))
    if bad.any():
        at = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        where = "".join(f"[{i}]" for i in at)
        raise TTamerError(f"{name}{where} must be a {'number, not nan' if infinite else 'finite number'}{rng}, "
                          f"got {float(arr[at])}")
    return arr


def check_integers(values: Any, name: str, low: int, high: int | None, max_len: int) -> np.ndarray:
    """``values`` as a non-empty 1-D ``int64`` array of at most ``max_len`` integers in
    ``low..high`` (no bound but int64's for ``high=None``; NumPy integer arrays accepted,
    floats, booleans and strings refused).

    Raises
    ------
    TTamerError
        Naming ``name``, for anything else.
    """
    top = np.iinfo(np.int64).max if high is None else high
    what = f"a non-empty 1-D array of integers {f'>= {low}' if high is None else f'in {low}..{high}'}"
    arr = _array(values, name, what, "iu", 1, max_len)
    bad = (arr < low) | (arr > top)
    if bad.any():
        raise TTamerError(f"{name} must be {what}, got {int(arr[bad][0])} at index {int(np.argmax(bad))}")
    return arr.astype(np.int64)


def check_choice(name: str, value: Any, allowed: tuple[str, ...], auto: bool = False, note: str = "") -> None:
    """Raise :class:`~ttamer.core.errors.TTamerError` naming the parameter ``name`` and the
    values it accepts unless ``value`` is one of ``allowed`` (or ``"auto"`` where ``auto``)."""
    if (auto and isinstance(value, str) and value == "auto") or (isinstance(value, str) and value in allowed):
        return
    accepted = f"{allowed} or 'auto'" if auto else f"{allowed}"
    raise TTamerError(f"{name} must be one of {accepted}{note}, got {escape_text(repr(value), 80)}")


def escape_text(text: Any, limit: int | None = None) -> str:
    """``text`` safe to print on a terminal: control characters, bidirectional overrides,
    lone surrogates and other non-printable characters become backslash escapes."""
    text = text if isinstance(text, str) else str(text)
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
            for c in text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def escape_lines(text: str, limit: int | None = None, max_lines: int | None = None) -> str:
    """:func:`escape_text` on every line of ``text`` (newlines kept), each cut to ``limit``
    characters; beyond ``max_lines`` lines, one line saying how many were left out."""
    lines = text.split("\n")
    shown = lines if max_lines is None or len(lines) <= max_lines else lines[:max_lines]
    out = [escape_text(line, limit) for line in shown]
    if len(shown) < len(lines):
        out.append(f"... {len(lines) - len(shown):,} more lines")
    return "\n".join(out)


def magnitude(value: int) -> str:
    """A short description of a (possibly huge) non-negative integer: ``1,234`` or ``more than 10^k``."""
    if value < 10**12:
        return f"{value:,}"
    return f"more than 10^{(value.bit_length() - 1) * 30103 // 100000}"


def magnitude_log10(log10_value: float) -> str:
    """A short description of a count known by its base-10 logarithm."""
    if log10_value < 12:
        return f"{round(10 ** log10_value):,}"
    return f"more than 10^{int(math.floor(log10_value))}"
