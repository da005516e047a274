"""The real learning curve at one base size: monotone in x = log(n_base + n_add).

The real arm's cell means against x are made monotone by isotonic regression (pool adjacent
violators) and read between knots by a monotone cubic (intervals.curve_interpolant: PCHIP; a
line between knots is biased for a curve concave in log n), never extrapolated: a synthetic
cell's accuracy read off this curve is the extra real images it is worth (see equivalence.py,
item 1). `monotone_inverse` (the planner's synthetic side) stays piecewise linear.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from synthequiv.stats.intervals import REAL, Key, curve_interpolant
from synthequiv.utils import SynthequivError

_TIE_TOL = 1e-12


def _isotonic(y: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit to y (pool adjacent violators, equal weights)."""
    levels: list[float] = []
    sizes: list[int] = []
    for v in y:
        levels.append(float(v))
        sizes.append(1)
        while len(levels) > 1 and levels[-2] > levels[-1]:
            n = sizes[-2] + sizes[-1]
            levels[-2:] = [(levels[-2] * sizes[-2] + levels[-1] * sizes[-1]) / n]
            sizes[-2:] = [n]
    return np.repeat(levels, sizes)


def _invert(x: np.ndarray, y_iso: np.ndarray, y_query: float) -> tuple[float, str]:
    """Piecewise-linear inverse of an already monotone curve; see `monotone_inverse`."""
    tol = _TIE_TOL * max(1.0, abs(y_query))
    if y_query < y_iso[0] - tol:
        return float(x[0]), "below_range"
    if y_query > y_iso[-1] + tol:
        return float(x[-1]), "above_range"
    on_level = np.abs(y_iso - y_query) <= tol
    if on_level.any():  # leftmost x that reaches the level (generalised inverse)
        return float(x[np.argmax(on_level)]), "flat" if on_level.sum() > 1 else "ok"
    j = int(np.searchsorted(y_iso, y_query))  # y_iso[j-1] < y_query < y_iso[j]
    t = (y_query - y_iso[j - 1]) / (y_iso[j] - y_iso[j - 1])
    return float(x[j - 1] + t * (x[j] - x[j - 1])), "ok"


def monotone_inverse(x_knots, y_knots, y_query: float) -> tuple[float, str]:
    """x at which the isotonic version of y(x) reaches `y_query`: exact at knots, linear
    between them, never extrapolated. Flags "ok", "below_range" (returns x[0]), "above_range"
    (returns x[-1], a bound), "flat" (a level held over several knots: the leftmost x)."""
    y_query = float(y_query)
    if not math.isfinite(y_query):
        raise SynthequivError(f"cannot invert the curve at a non-finite value ({y_query})")
    x = np.asarray(x_knots, dtype=float).ravel()
    y = np.asarray(y_knots, dtype=float).ravel()
    if x.size == 0 or x.shape != y.shape:
        raise SynthequivError(f"need equally many x and y knots (got {x.size} and {y.size})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise SynthequivError("curve knots must be finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise SynthequivError("curve knots need distinct x values")
    return _invert(x, _isotonic(y), y_query)


@dataclass
class RealCurve:
    """The real arm at one base size: knots in x = log(n_base + n_add)."""

    n_base: int
    n_add: np.ndarray  # [K], starts at 0
    x: np.ndarray  # [K]
    y: np.ndarray  # [K] isotonic cell means
    keys: list[Key]

    @property
    def m_max(self) -> float:
        return float(self.n_add[-1])

    @functools.cached_property
    def _between(self):  # the monotone cubic through the knots (2 or more)
        return curve_interpolant(self.x, self.y)

    def at(self, n_real: np.ndarray) -> np.ndarray:
        """Accuracy after n_real extra real images/class (clamped to the measured range)."""
        x = np.clip(np.log(self.n_base + np.asarray(n_real, float)), self.x[0], self.x[-1])
        if len(self.x) < 2:
            return np.full_like(x, self.y[0])
        return self._between(x)

    def inverse(self, acc: float) -> tuple[float, str]:
        """Extra real images/class at which the curve reaches `acc`, with `_invert`'s flags
        (knots, levels and the range as the linear inverse; between knots the monotone cubic)."""
        x, flag = _invert(self.x, self.y, acc)
        j = int(np.searchsorted(self.x, x))
        if flag == "ok" and len(self.x) > 2 and 0 < j < len(self.x) and self.x[j] != x:
            f = self._between  # monotone on [x[j-1], x[j]], y between
            x = float(optimize.brentq(lambda v: float(f(v)) - acc, self.x[j - 1], self.x[j],
                                      xtol=1e-12))
        return max(0.0, math.exp(x) - self.n_base), flag


def real_curves(means: Mapping[Key, float]) -> dict[int, RealCurve]:
    """One curve per base size that has a real baseline (arm real, n_add 0)."""
    out = {}
    for n_base in sorted({k[0] for k in means}):
        keys = sorted(k for k in means if k[0] == n_base and k[1] == REAL)
        if not keys or keys[0][2] != 0:
            continue
        n_add = np.array([k[2] for k in keys], float)
        y = np.array([means[k] for k in keys])
        out[n_base] = RealCurve(n_base, n_add, np.log(n_base + n_add), _isotonic(y), keys)
    return out
