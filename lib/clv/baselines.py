"""Classical CLV baselines (BG/NBD purchase counts, Gamma-Gamma spend) for the ML models to beat."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, special

logger = logging.getLogger(__name__)

ArrayLike = npt.ArrayLike

# Log-parameters are boxed so that exp() can neither overflow nor underflow to 0, which would
# turn the likelihood into inf/nan mid-search. A fit that drifts beyond exp(+-_LOG_SUSPECT)
# (e.g. a -> 0, b -> inf when nobody seems to drop out) is degenerate and reported, not hidden.
_LOG_BOUND = 20.0
_LOG_SUSPECT = 15.0
# Half-width of the neighbourhoods of the removable singularities of the BG/NBD conditional
# expectation (a = 1; a + b = 1 with x = 0) inside which it is extrapolated from outside them.
_SINGULAR_STEP = 1e-5


@dataclass(frozen=True)
class BGNBDParams:
    """Purchase rate lambda ~ Gamma(r, rate alpha), dropout probability p ~ Beta(a, b).

    alpha is in the caller's time unit (weeks in this project), the other three are unitless.
    """

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Transaction value ~ Gamma(p, rate nu), nu ~ Gamma(q, rate gamma); gamma is in money units."""

    p: float
    q: float
    gamma: float


def _shown(params: BGNBDParams | GammaGammaParams) -> str:
    """Parameters as a log line shows them: 4 significant digits, enough to tell two fits apart."""
    return ", ".join(f"{name}={value:.4g}" for name, value in dataclasses.asdict(params).items())


# --------------------------------------------------------------------------- input checks


def _as_float_arrays(*values: ArrayLike) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float) for v in values]
    try:
        return [np.array(a) for a in np.broadcast_arrays(*arrays)]
    except ValueError as err:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(f"inputs have incompatible shapes: {shapes}") from err


def _check_finite(**arrays: np.ndarray) -> None:
    for name, values in arrays.items():
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or infinite values ({np.sum(~np.isfinite(values))} of them)")


def _check_rft(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, allow_empty: bool) -> tuple[np.ndarray, ...]:
    """Broadcast and validate a recency/frequency/age summary; bad rows would silently poison a fit."""
    x_, t_x_, T_ = _as_float_arrays(x, t_x, T)
    if x_.size == 0 and not allow_empty:
        raise ValueError("BG/NBD needs at least one customer; got empty arrays")
    _check_finite(x=x_, t_x=t_x_, T=T_)
    for name, values in (("x", x_), ("t_x", t_x_), ("T", T_)):
        if np.any(values < 0):
            raise ValueError(
                f"{name} must be >= 0; {np.sum(values < 0)} negative value(s), e.g. {values[values < 0].flat[0]}"
            )
    if np.any(x_ != np.round(x_)):
        raise ValueError("x (number of repeat purchases) must be whole numbers")
    late = t_x_ > T_
    if np.any(late):
        i = int(np.flatnonzero(late.ravel())[0])
        raise ValueError(
            f"t_x (time of last purchase) exceeds T (customer age) for {int(late.sum())} customer(s), "
            f"e.g. index {i}: t_x={t_x_.flat[i]}, T={T_.flat[i]}"
        )
    return x_, t_x_, T_


def _check_weights(weights: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray:
    if weights is None:
        return np.ones(shape)
    w = np.asarray(weights, dtype=float)
    if w.shape != shape:
        raise ValueError(f"weights must have one entry per customer, shape {shape}; got {w.shape}")
    _check_finite(weights=w)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    return w


def _check_horizon(horizon: ArrayLike) -> np.ndarray:
    h = np.asarray(horizon, dtype=float)
    _check_finite(horizon=h)
    if np.any(h < 0):
        raise ValueError(f"horizon must be >= 0; got {horizon!r}")
    return h


def _minimize(fun: Any, x0: np.ndarray, what: str, max_iter: int) -> np.ndarray:
    """L-BFGS-B on boxed log-parameters; a failed search is an error, a degenerate optimum a warning."""
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(x0)
    result = optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9}
    )
    if not result.success:
        # L-BFGS-B gives up on a line search that cannot improve f in the last few digits; that
        # is convergence if the gradient is already flat, and a genuine failure otherwise.
        _, grad = fun(result.x)
        free = np.abs(result.x) < _LOG_BOUND - 1e-8
        if not (np.all(np.isfinite(grad)) and np.max(np.abs(grad[free]), initial=0.0) < 1e-6):
            raise ValueError(f"{what} maximum-likelihood fit did not converge: {result.message}")
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise ValueError(f"{what} maximum-likelihood fit did not converge: non-finite likelihood")
    if np.any(np.abs(result.x) > _LOG_SUSPECT):
        logger.warning(
            "%s fit drifted to a parameter beyond exp(+-%s) (log-parameters %s): the maximum "
            "likelihood is degenerate for this data, treat the parameters with suspicion",
            what,
            _LOG_SUSPECT,
            np.round(result.x, 2).tolist(),
        )
    logger.debug("%s fit: %s iterations, mean log-likelihood %.6f", what, result.nit, -result.fun)
    return result.x


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_ll_and_grad(
    log_params: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood and its gradient in (log r, log alpha, log a, log b)."""
    r, alpha, a, b = np.exp(log_params)
    repeat = x > 0
    b_prev = np.where(repeat, b + x - 1, 1.0)  # b + x - 1 only exists for repeat buyers
    log_beta_ab = special.betaln(a, b)
    log_alive = special.betaln(a, b + x) - log_beta_ab - (r + x) * np.log(alpha + T)
    log_dead = np.where(
        repeat,
        special.betaln(a + 1, b_prev) - log_beta_ab - (r + x) * np.log(alpha + np.where(repeat, t_x, 0.0)),
        -np.inf,
    )
    log_mix = np.logaddexp(log_alive, log_dead)
    ll = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + log_mix
    w_alive, w_dead = np.exp(log_alive - log_mix), np.exp(log_dead - log_mix)

    psi_abx, psi_ab = special.digamma(a + b + x), special.digamma(a + b)
    d_r = (
        special.digamma(r + x)
        - special.digamma(r)
        + np.log(alpha)
        - w_alive * np.log(alpha + T)
        - w_dead * np.log(alpha + t_x)
    )
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + T) + w_dead / (alpha + t_x))
    d_a = (
        w_alive * (special.digamma(a) - psi_abx)
        + w_dead * (special.digamma(a + 1) - psi_abx)
        - (special.digamma(a) - psi_ab)
    )
    d_b = (
        w_alive * (special.digamma(b + x) - psi_abx)
        + np.where(repeat, w_dead * (special.digamma(b_prev) - psi_abx), 0.0)
        - (special.digamma(b) - psi_ab)
    )
    grad = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b], axis=-1)
    return ll, grad


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None, *, max_iter: int = 2000
) -> BGNBDParams:
    """Maximum likelihood over log-parameters, so every candidate is a valid model.

    Times are divided by the mean age before the search (alpha is scaled back afterwards); the
    likelihood only shifts by a constant, and the start (all parameters 1) is then on the
    data's own scale whatever the caller's unit. `weights` count duplicated customers.
    """
    x_, t_x_, T_ = _check_rft(x, t_x, T, allow_empty=False)
    w = _check_weights(weights, x_.shape)
    if not np.any((x_ > 0) & (w > 0)):
        raise ValueError("BG/NBD is not identified without any repeat purchase (all x == 0)")
    scale = float(np.average(T_, weights=w))
    if scale <= 0:
        raise ValueError("BG/NBD needs customers with positive age T")
    x_, t_s, T_s, w = x_.ravel(), t_x_.ravel() / scale, T_.ravel() / scale, w.ravel() / w.sum()

    def neg_ll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = _bgnbd_ll_and_grad(log_params, x_, t_s, T_s)
        return -float(w @ ll), -(w @ grad)

    r, alpha, a, b = np.exp(_minimize(neg_ll, np.zeros(4), "BG/NBD", max_iter))
    params = BGNBDParams(r=float(r), alpha=float(alpha * scale), a=float(a), b=float(b))
    logger.info("BG/NBD fitted on %d customers: %s", x_.size, _shown(params))
    return params


def _log_dead_odds(params: BGNBDParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log of P(dead)/P(alive) at T; -inf for customers without repeat purchases, who cannot have left."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    b_prev = np.where(repeat, b + x - 1, 1.0)
    odds = np.log(a) - np.log(b_prev) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(repeat, odds, -np.inf)


def prob_alive(params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """P(still active at T). Never rank customers by it: every one-time buyer scores exactly 1."""
    x_, t_x_, T_ = _check_rft(x, t_x, T, allow_empty=True)
    return special.expit(-_log_dead_odds(params, x_, t_x_, T_))


def prob_purchase_within(
    params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, horizon: ArrayLike
) -> np.ndarray:
    """P(at least one purchase in (T, T + horizon]): the model's answer to the repurchase label.

    An active customer's rate posterior is Gamma(r + x, alpha + T), and dropout only follows a
    purchase, so "no purchase in the window" for an active customer is just P(N(horizon) = 0).
    """
    x_, t_x_, T_ = _check_rft(x, t_x, T, allow_empty=True)
    h = _check_horizon(horizon)
    purchase_if_alive = -np.expm1(-(params.r + x_) * np.log1p(h / (params.alpha + T_)))
    return prob_alive(params, x_, t_x_, T_) * purchase_if_alive


def _expected_purchases_if_alive(
    r: float, alpha: float, a: float, b: float | np.ndarray, x: np.ndarray, T: np.ndarray, h: np.ndarray
) -> np.ndarray:
    """Eq. (10) of Fader, Hardie & Lee (2005) without its P(alive) denominator, after Euler's transform.

    The paper writes 1 - ((alpha+T)/(alpha+T+h))^(r+x) 2F1(r+x, b+x; a+b+x-1; z). For a few hundred
    repeat purchases 2F1 overflows while the power underflows, giving inf * 0 = NaN. Euler's
    transform 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns the product into
    (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), which stays finite. The identity is the same
    function, so it is also valid for a < 1 (by analytic continuation of the integral over p);
    only a = 1 and a + b + x - 1 = 0 are (removable) singular points, handled by the caller.
    """
    z = h / (alpha + T + h)
    log_one_minus_z = -np.log1p(h / (alpha + T))
    c = a + b + x - 1
    bracket = -np.expm1((a - 1) * log_one_minus_z) - np.exp((a - 1) * log_one_minus_z) * (
        special.hyp2f1(a + b - 1 - r, a - 1, c, z) - 1.0
    )
    return c / (a - 1) * bracket


def expected_purchases(
    params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, horizon: ArrayLike
) -> np.ndarray:
    """E[number of purchases in (T, T + horizon] | x, t_x, T], the paper's eq. (10).

    Eq. (10) is exact for a < 1 as well (checked against quadrature of its defining integral and
    against simulation in the tests), but it divides 0 by 0 at a = 1 and, for customers without
    repeat purchases, at a + b = 1, and loses digits to cancellation close to them (~1e-5
    relative at 1e-9 away). Within 1e-5 of those points the value is extrapolated linearly from
    two points just outside, accurate to ~1e-10 because the expectation is smooth in a and b.
    """
    x_, t_x_, T_ = _check_rft(x, t_x, T, allow_empty=True)
    h = _check_horizon(horizon)
    x_, t_x_, T_, h = np.broadcast_arrays(x_, t_x_, T_, h)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    step = _SINGULAR_STEP

    if abs(a - 1) < step:
        # a = 1 + step and 1 + 2 step keep a + b + x - 1 >= b + step > 0, away from the other pole
        near = _expected_purchases_if_alive(r, alpha, 1 + step, b, x_, T_, h)
        far = _expected_purchases_if_alive(r, alpha, 1 + 2 * step, b, x_, T_, h)
        if_alive = near + (a - 1 - step) * (far - near) / step
    else:
        b_row = np.full(x_.shape, b)
        pole = (x_ == 0) & (abs(a + b - 1) < step)
        b_row[pole] = 1 - a + step  # > 0 since b > 0 and |a + b - 1| < step
        if_alive = np.array(_expected_purchases_if_alive(r, alpha, a, b_row, x_, T_, h))
        if np.any(pole):
            far = _expected_purchases_if_alive(r, alpha, a, 1 - a + 2 * step, x_[pole], T_[pole], h[pole])
            if_alive[pole] += (b - b_row[pole]) * (far - if_alive[pole]) / step
    return special.expit(-_log_dead_odds(params, x_, t_x_, T_)) * if_alive


# --------------------------------------------------------------------------- Gamma-Gamma


def _check_spend(x: ArrayLike, m_x: ArrayLike, *, fitting: bool) -> tuple[np.ndarray, np.ndarray]:
    x_, m_ = _as_float_arrays(x, m_x)
    if x_.size == 0 and fitting:
        raise ValueError("Gamma-Gamma needs at least one customer; got empty arrays")
    _check_finite(x=x_, m_x=m_)
    if np.any(x_ < 0) or np.any(x_ != np.round(x_)):
        raise ValueError("x (number of transactions) must be whole numbers >= 0")
    if fitting:
        if np.any(x_ < 1):
            raise ValueError("Gamma-Gamma is fitted on customers with x >= 1 only; filter the others out")
        if np.any(m_ <= 0):
            raise ValueError("Gamma-Gamma needs a positive mean transaction value m_x for every customer")
    elif np.any(m_ < 0):
        raise ValueError("m_x (mean transaction value) must be >= 0")
    return x_, m_


def _gamma_gamma_ll_and_grad(
    log_params: np.ndarray,
    x: np.ndarray,
    m: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood of the mean value and its gradient in (log p, log q, log gamma)."""
    p, q, gamma = np.exp(log_params)
    px = p * x
    log_total = np.log(gamma + x * m)
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_total
    )
    psi_sum = special.digamma(px + q)
    d_p = x * (psi_sum - special.digamma(px) + np.log(m) + np.log(x) - log_total)
    d_q = psi_sum - special.digamma(q) + np.log(gamma) - log_total
    d_gamma = q / gamma - (px + q) / (gamma + x * m)
    return ll, np.stack([d_p * p, d_q * q, d_gamma * gamma], axis=-1)


def fit_gamma_gamma(
    x: ArrayLike, m_x: ArrayLike, weights: ArrayLike | None = None, *, max_iter: int = 2000
) -> GammaGammaParams:
    """Maximum likelihood over log-parameters; values are divided by their mean first, so the
    start (p = q = 1, gamma = mean value) does not depend on the currency."""
    x_, m_ = _check_spend(x, m_x, fitting=True)
    w = _check_weights(weights, x_.shape)
    scale = float(np.average(m_, weights=w))
    x_, m_s, w = x_.ravel(), m_.ravel() / scale, w.ravel() / w.sum()

    def neg_ll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = _gamma_gamma_ll_and_grad(log_params, x_, m_s)
        return -float(w @ ll), -(w @ grad)

    p, q, gamma = np.exp(_minimize(neg_ll, np.zeros(3), "Gamma-Gamma", max_iter))
    params = GammaGammaParams(p=float(p), q=float(q), gamma=float(gamma * scale))
    logger.info("Gamma-Gamma fitted on %d customers: %s", x_.size, _shown(params))
    return params


def expected_spend(params: GammaGammaParams, x: ArrayLike, m_x: ArrayLike) -> np.ndarray:
    """Posterior mean value of a future transaction: the customer's own mean shrunk towards the
    population mean, the less so the more transactions it rests on.

    Requires q > 1: otherwise the population mean p * gamma / (q - 1) is infinite and the
    model has no finite expected value to offer for anyone.
    """
    if params.q <= 1:
        raise ValueError(f"Gamma-Gamma expected spend needs q > 1 (finite population mean); got q={params.q}")
    x_, m_ = _check_spend(x, m_x, fitting=False)
    p, q, gamma = params.p, params.q, params.gamma
    observed = x_ >= 1
    m_used = np.where(observed, m_, 0.0)  # x = 0 carries no spend information
    return p * (gamma + m_used * x_) / (p * x_ + q - 1)


# --------------------------------------------------------------------------- value and adapter


_FEATURE_COLUMNS = ("purchase_days", "tenure_days", "days_since_last_purchase", "revenue_total", "purchase_count")


def calibration_summary(features: pd.DataFrame, time_unit_days: float = 7.0) -> pd.DataFrame:
    """Map the feature table onto the BG/NBD summary, counting purchase days as transactions.

    Days rather than invoices, because several invoices on one day are one visit, not several
    independent Poisson events; weeks by default, so parameters are comparable with the literature.
    """
    if time_unit_days <= 0:
        raise ValueError(f"time_unit_days must be > 0; got {time_unit_days}")
    missing = [c for c in _FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s) {missing}")
    summary = pd.DataFrame(
        {
            "frequency": features["purchase_days"].astype(float) - 1.0,
            "recency": (features["tenure_days"] - features["days_since_last_purchase"]).astype(float) / time_unit_days,
            "T": features["tenure_days"].astype(float) / time_unit_days,
            "monetary": features["revenue_total"].astype(float) / features["purchase_count"].astype(float),
        },
        index=features.index,
    )
    return summary


class BGNBDBaseline:
    """BG/NBD + Gamma-Gamma with the same fit/score surface as the project's ML models."""

    def __init__(self, time_unit_days: float = 7.0) -> None:
        if time_unit_days <= 0:
            raise ValueError(f"time_unit_days must be > 0; got {time_unit_days}")
        self.time_unit_days = float(time_unit_days)
        self.bgnbd: BGNBDParams | None = None
        self.gamma_gamma: GammaGammaParams | None = None
        self.fallback_spend: float | None = None

    def _summary(self, features: pd.DataFrame) -> pd.DataFrame:
        return calibration_summary(features, self.time_unit_days)

    def _require_fitted(self) -> BGNBDParams:
        if self.bgnbd is None:
            raise RuntimeError("BGNBDBaseline is not fitted; call fit(features) first")
        return self.bgnbd

    def fit(self, features: pd.DataFrame, min_spend_rows: int = 20) -> BGNBDBaseline:
        """Fit BG/NBD on every row and Gamma-Gamma on repeat buyers with positive spend.

        Gamma-Gamma's x is the number of values averaged into m_x. `monetary` here averages
        over all `purchase_count` invoices (first purchase included), so that is its x; passing
        the repeat-day frequency instead understates how precise each mean is and biases p
        (about 2x on simulated data). A spend model that cannot be fitted (too few repeat
        buyers, q <= 1 meaning an infinite mean) is replaced by the observed mean value.
        """
        s = self._summary(features)
        self.bgnbd = fit_bgnbd(s["frequency"], s["recency"], s["T"])
        spenders = (s["frequency"] >= 1) & (s["monetary"] > 0)
        self.gamma_gamma, self.fallback_spend = None, None
        reason = None
        if spenders.sum() < min_spend_rows:
            reason = f"only {int(spenders.sum())} repeat buyers with positive spend (< {min_spend_rows})"
        else:
            try:
                gg = fit_gamma_gamma(features.loc[spenders, "purchase_count"], s.loc[spenders, "monetary"])
            except ValueError as err:
                reason = str(err)
            else:
                if gg.q <= 1:
                    reason = f"q={gg.q:.3g} <= 1 (infinite population mean spend)"
                else:
                    self.gamma_gamma = gg
        if self.gamma_gamma is None:
            positive = s.loc[s["monetary"] > 0, "monetary"]
            self.fallback_spend = float(positive.mean()) if len(positive) else 0.0
            logger.warning(
                "Gamma-Gamma not used (%s); expected spend falls back to the mean observed value %.4g",
                reason,
                self.fallback_spend,
            )
        return self

    def _horizon(self, horizon_days: float) -> float:
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be >= 0; got {horizon_days}")
        return horizon_days / self.time_unit_days

    def prob_repurchase(self, features: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """P(at least one purchase in the next horizon_days): comparable to the repurchase label."""
        bg = self._require_fitted()
        s = self._summary(features)
        return prob_purchase_within(bg, s["frequency"], s["recency"], s["T"], self._horizon(horizon_days))

    def prob_alive(self, features: pd.DataFrame) -> np.ndarray:
        """P(still active at the snapshot); 1 for every customer without a repeat purchase."""
        bg = self._require_fitted()
        s = self._summary(features)
        return prob_alive(bg, s["frequency"], s["recency"], s["T"])

    def expected_purchases(self, features: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """Expected purchase days in the next horizon_days."""
        bg = self._require_fitted()
        s = self._summary(features)
        return expected_purchases(bg, s["frequency"], s["recency"], s["T"], self._horizon(horizon_days))

    def expected_value(self, features: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """Expected revenue in the next horizon_days: expected purchase days times expected value
        per invoice (each customer's own mean over purchase_count invoices, shrunk)."""
        purchases = self.expected_purchases(features, horizon_days)
        s = self._summary(features)
        if self.gamma_gamma is None:
            return purchases * self.fallback_spend
        monetary = s["monetary"].to_numpy()
        if np.any(monetary < 0):
            logger.warning(
                "%d rows have negative monetary value; clipped to 0 for expected spend", int(np.sum(monetary < 0))
            )
            monetary = np.clip(monetary, 0.0, None)
        return purchases * expected_spend(self.gamma_gamma, features["purchase_count"], monetary)

    @property
    def params(self) -> dict[str, float]:
        """Flat parameter dict for mlflow.log_params."""
        bg = self._require_fitted()
        out = {
            "time_unit_days": self.time_unit_days,
            "bgnbd_r": bg.r,
            "bgnbd_alpha": bg.alpha,
            "bgnbd_a": bg.a,
            "bgnbd_b": bg.b,
        }
        if self.gamma_gamma is not None:
            out.update(gg_p=self.gamma_gamma.p, gg_q=self.gamma_gamma.q, gg_gamma=self.gamma_gamma.gamma)
        else:
            out["spend_fallback_mean"] = float(self.fallback_spend or 0.0)
        return out
