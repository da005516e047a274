"""Empirical-Bayes moderated variances: borrowing strength across the cells of a family.

A study with U replicates estimates each contrast's variance on U − 1 degrees of freedom (2 at
the quick design: t₀.₉₇₅ = 4.30, and Holm's first step needs t ≈ 12.6 for 8 cells). The cells
of one family (the synthetic cells of a grid; its real cells) are measured on the same units
with the same classifier and test sets, so their variances are alike without being equal.
Smyth (2004, "Linear models and empirical Bayes methods for assessing differential expression
in microarray experiments", the method of limma) models the true variances as scaled
inverse-χ² draws, 1/σ_g² ~ χ²_{d0} / (d0·s0²), estimates (d0, s0²) from the sample variances
by the method of moments on log s², and replaces each contrast's variance by the posterior

    s̃_g² = (d0·s0² + d_g·s_g²) / (d0 + d_g)          on d0 + d_g degrees of freedom.

Where the family's variances are as equal as their sampling noise allows, d0 is large and every
contrast gets (nearly) the pooled variance; where they differ clearly, d0 is small and each
keeps (nearly) its own. Two departures from limma, both conservative:
  * d0 is capped at the family's pooled degrees of freedom Σ d_g: the prior is estimated from
    those and is not known better than a pooled variance (limma's d0 = ∞ treats s0² as exact;
    contrasts sharing a baseline are also correlated, so Σ d_g already overstates);
  * a contrast with no spread over units (s² = 0, a discrete metric's equal differences) does
    not enter the estimate (log 0), but it does receive the posterior variance.
A family with fewer than 3 contrasts that vary gives no prior (d0 = 0): every contrast keeps
its own variance (the per-cell t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

MIN_CONTRASTS = 3  # a variance of log-variances needs a few values to mean anything


@dataclass(frozen=True)
class Prior:
    """Prior of a family's contrast variances: d0 = 0 means none (per-cell variances)."""

    df: float = 0.0  # d0, after the cap at the family's pooled df
    s2: float = math.nan  # s0²
    n_contrasts: int = 0  # contrasts with spread that estimated it
    df_uncapped: float = 0.0  # Smyth's d0 (may be inf)
    pooled_df: float = 0.0  # Σ d_g of the family's contrasts on ≥ 1 df (with spread or not)

    def posterior(self, s2: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s̃², d0 + d) for sample variances s2 on df degrees of freedom (arrays broadcast)."""
        s2, df = np.asarray(s2, float), np.asarray(df, float)
        if not self.df > 0:
            return s2, df
        return (self.df * self.s2 + df * s2) / (self.df + df), df + self.df

    def as_dict(self) -> dict:
        return {"prior_df": self.df, "prior_var": self.s2, "n_contrasts": self.n_contrasts,
                "prior_df_uncapped": self.df_uncapped}


def trigamma_inverse(y: float) -> float:
    """x > 0 with ψ'(x) = y (ψ' = trigamma, decreasing from ∞ to 0)."""
    if not y > 0:
        raise ValueError(f"trigamma_inverse needs y > 0, got {y}")
    f = lambda lx: float(special.polygamma(1, math.exp(lx))) - y  # noqa: E731
    if f(40.0) > 0:  # ψ'(x) ≈ 1/x: beyond e^40 the spread is nil, x is as good as infinite
        return math.inf
    if f(-30.0) < 0:  # ψ'(x) ≈ 1/x² near 0
        return math.exp(-30.0)
    return math.exp(optimize.brentq(f, -30.0, 40.0, xtol=1e-14, rtol=1e-14))


def fit_prior(s2, df, cap: float | None = None) -> Prior:
    """Smyth's (2004, §6.2) moment estimates of (d0, s0²) from sample variances s2 [G] on df [G]
    degrees of freedom; contrasts with s2 ≤ 0 or df < 1 are left out (see the module doc).
    d0 is capped at `cap` (default: the contrasts' pooled df Σ d_g; a family of correlated
    contrasts, e.g. every synthetic cell against every real knot, passes the df of its
    independent part)."""
    s2, df = np.asarray(s2, float).ravel(), np.asarray(df, float).ravel()
    pooled = float(df[np.isfinite(df) & (df >= 1)].sum())
    ok = np.isfinite(s2) & (s2 > 0) & np.isfinite(df) & (df >= 1)
    s2, df = s2[ok], df[ok]
    if s2.size < MIN_CONTRASTS:
        return Prior(n_contrasts=int(s2.size), pooled_df=pooled)
    # e_g = log s_g² − ψ(d_g/2) + log(d_g/2) is unbiased for log σ_g², with sampling variance
    # ψ'(d_g/2); what is left of its spread is the spread of the true log-variances
    e = np.log(s2) - special.digamma(df / 2) + np.log(df / 2)
    e_bar = float(e.mean())
    excess = float(np.var(e, ddof=1) - np.mean(special.polygamma(1, df / 2)))
    # no more spread than sampling alone gives: equal variances (d0 = ∞, s0² = exp(ē))
    d0 = 2.0 * trigamma_inverse(excess) if excess > 0 else math.inf
    s0 = (math.exp(e_bar + float(special.digamma(d0 / 2)) - math.log(d0 / 2))
          if math.isfinite(d0) else math.exp(e_bar))
    return Prior(df=float(min(d0, df.sum() if cap is None else cap)), s2=s0,
                 n_contrasts=int(s2.size),
                 df_uncapped=float(d0), pooled_df=pooled)

