"""Test-only companions of clv.baselines: the BG/NBD and Gamma-Gamma stories as simulators, and the
per-customer log-likelihoods, so the formulas are checked against the processes they claim to
describe. No stage uses these, so they live with the tests."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from clv.baselines import (
    ArrayLike,
    BGNBDParams,
    GammaGammaParams,
    _bgnbd_ll_and_grad,
    _check_rft,
    _check_spend,
    _gamma_gamma_ll_and_grad,
    expected_purchases,
    expected_spend,
)


class BGNBDSimulation(NamedTuple):
    """Calibration summary (x, t_x, T) plus the holdout count the model is asked to predict."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    holdout_purchases: np.ndarray


def bgnbd_log_likelihood(params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Per-customer log-likelihood, so fits can be compared and tests can check it by hand."""
    x_, t_x_, T_ = _check_rft(x, t_x, T, allow_empty=True)
    log_params = np.log([params.r, params.alpha, params.a, params.b])
    return _bgnbd_ll_and_grad(log_params, x_, t_x_, T_)[0]


def simulate_bgnbd(
    params: BGNBDParams,
    T: ArrayLike,
    horizon: float,
    n: int,
    seed: int,
) -> BGNBDSimulation:
    """Draw customers from the BG/NBD story, to test the formulas against the process they claim to describe.

    Purchases follow a Poisson process of rate lambda from the first purchase at time 0; the
    customer leaves right after the K-th repeat purchase, K ~ Geometric(p). Given the number
    of Poisson arrivals in [0, T + horizon], their times are iid uniform, which vectorises.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0; got {horizon}")
    T_ = np.asarray(T, dtype=float)
    if T_.ndim == 0:
        T_ = np.full(n, float(T_))
    if T_.shape != (n,):
        raise ValueError(f"T must be a scalar or have n={n} entries; got shape {T_.shape}")
    if np.any(T_ < 0) or not np.all(np.isfinite(T_)):
        raise ValueError("T must be finite and >= 0")
    rng = np.random.default_rng(seed)
    lam = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n)
    p = np.clip(rng.beta(params.a, params.b, size=n), 1e-15, 1.0)  # p = 0 would never drop out
    lifetime_purchases = rng.geometric(p)  # the repeat purchase after which the customer leaves
    end = T_ + horizon
    arrivals = rng.poisson(lam * end)
    owner = np.repeat(np.arange(n), arrivals)
    times = rng.uniform(0.0, 1.0, size=owner.size) * end[owner]
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    starts = np.concatenate([[0], np.cumsum(arrivals)[:-1]])
    rank = np.arange(owner.size) - starts[owner]  # 0-based purchase number within customer
    made = rank < lifetime_purchases[owner]
    in_calibration = made & (times <= T_[owner])
    x = np.bincount(owner[in_calibration], minlength=n).astype(float)
    t_x = np.zeros(n)
    np.maximum.at(t_x, owner[in_calibration], times[in_calibration])
    holdout = np.bincount(owner[made & ~in_calibration], minlength=n).astype(float)
    return BGNBDSimulation(x=x, t_x=t_x, T=T_, holdout_purchases=holdout)


def gamma_gamma_log_likelihood(params: GammaGammaParams, x: ArrayLike, m_x: ArrayLike) -> np.ndarray:
    """Per-customer log-likelihood of the observed mean transaction value given x transactions."""
    x_, m_ = _check_spend(x, m_x, fitting=True)
    return _gamma_gamma_ll_and_grad(np.log([params.p, params.q, params.gamma]), x_, m_)[0]


def simulate_gamma_gamma(params: GammaGammaParams, x: ArrayLike, seed: int) -> np.ndarray:
    """Mean transaction value per customer drawn from the model, for recovery tests.

    The sum of x iid Gamma(p, rate nu) values is Gamma(p x, rate nu), so the mean is drawn in
    one step per customer instead of one per transaction.
    """
    x_ = np.asarray(x, dtype=float)
    if x_.size == 0 or np.any(x_ < 1) or np.any(x_ != np.round(x_)):
        raise ValueError("x must be a non-empty array of whole numbers >= 1")
    rng = np.random.default_rng(seed)
    nu = rng.gamma(shape=params.q, scale=1.0 / params.gamma, size=x_.shape)
    return rng.gamma(shape=params.p * x_, scale=1.0 / nu) / x_


def expected_value_within(
    bg: BGNBDParams,
    gg: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m_x: ArrayLike,
    horizon: ArrayLike,
) -> np.ndarray:
    """Expected revenue in (T, T + horizon]; the product is exact because the two models assume
    spend independent of the purchase process."""
    return expected_purchases(bg, x, t_x, T, horizon) * expected_spend(gg, x, m_x)
