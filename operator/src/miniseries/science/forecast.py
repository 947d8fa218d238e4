"""Forecast a run's final training loss and val bpb from its partial loss curve (numpy/scipy, no torch).

The law is the learning-rate-annealing scaling law of Tissue et al. 2024 ("Scaling Law with
Learning Rate Annealing", arXiv 2408.11029):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

with, over the learning-rate multipliers eta_1 .. eta_s of the steps so far,

    S1(s) = sum_i eta_i                                   the forward area
    m_i   = lambda * m_(i-1) + max(0, eta_(i-1) - eta_i)   the annealing momentum
    S2(s) = sum_i m_i                                     the annealing area

and the paper's decay factor lambda = 0.999. Two choices of ours, stated: (1) the warmup's
rising multipliers add to S1 but nothing to S2 (only decreases anneal); (2) both areas are
divided by the run's planned steps T, so that C (and A) are in units a sweep's runs of
different lengths share. Within one run that is only a reparametrisation of the paper's law.

How a run is forecast (`forecast_run`):

- Before the warmdown a run's own curve says nothing about C (S2 is 0), and a partial curve
  barely pins alpha apart from L0. So alpha and C come from the sweep's finished runs (each
  fitted on its whole curve, `fit_curve`; the *prior* is their median) and only L0 and A are
  fitted to the run itself, by least squares on the logged points past the warmup.
- Inside the warmdown the run's own points say something about C, and C is their estimate
  shrunk to the prior's (`_fit_shrunk`): least squares plus a Gaussian penalty
  ((C - C_prior) / tau)^2 in units of the residual variance, tau the spread of the finished
  runs' C and at least `PRIOR_C_SPREAD` of their median. The run's own weight grows with the
  annealing area it has seen (S2 enters the fit's normal equations squared), so there is no
  switch. A hard switch to the run's own C after `MIN_FIT_POINTS` warmdown steps was measured
  and rejected: the first steps of a warmdown anneal almost nothing (S2 grows quadratically from
  0), so C was fitted to a few noisy points and ran away (the tiny sweep's d3 cut at 167 of 258
  steps: C = 46.7, a final loss of -2.10 for an actual 4.80; d2 at 78 of 112: 3.52 for 5.57).
  With no finished run yet, a forecast needs `MIN_FIT_POINTS` steps of warmdown and fits all four.
- The final training loss is the law's mean over the last tenth of the steps, as results.json's
  `loss.final` is the mean of the last tenth of the logged losses.
- The final val bpb is that loss times the sweep's loss-to-bpb ratio (val_bpb / loss.final of
  the finished runs, median). bpb is loss in nats / (ln 2 x bytes per token), and bytes per
  token is a property of the shared tokenizer and data, so the ratio carries over between
  runs (the tiny sweep: 0.572-0.579).
- The interval (95%) is a bootstrap: each replicate refits the run to its fitted curve plus
  residuals resampled in blocks of `BLOCK` consecutive steps (the loss noise is correlated
  over neighbouring steps), at least `MIN_BLOCKS` blocks per trace (a block as long as the
  trace would resample it into itself: every replicate the same, an interval of zero width),
  and takes alpha, the prior's C and the ratio from one finished run drawn at random (the spread
  between runs is the prior's own uncertainty; with one finished run it is not represented, and
  the interval is narrower than it should be); inside the warmdown each replicate shrinks its own
  C to that run's, so the interval keeps the prior's spread until the run's own warmdown pins C. Its half-width is never below the residuals' own
  standard error of the level (z x rmse / sqrt(blocks)).
- A degenerate law says so (`CurveFit.degenerate`). A short, early trace is nearly linear in
  log S1, and least squares then trades L0 against alpha without bound: L0 runs negative and
  alpha to the low end of its grid (the tiny sweep's d2: L0 = -42.1, A = 47.7, alpha = 0.01).
  That law is the log-linear limit, L ~ (L0 + A) - A alpha ln S1 - C S2: its intercept and
  slope are what the curve pins, L0 and A apart are not (no irreducible loss is identified),
  and the forecast uses it as such. Holding L0 >= 0 instead was measured and rejected: on the
  tiny sweep's replay from half the steps it took the median error of the final loss from
  0.72% to 6.4% (a power law with a floor at 0 bends where the data does not).
- Too short a trace is refused with "not enough steps yet (have N, need M)", never a number.
- A non-finite loss anywhere in the trace is refused naming the step (`NonFiniteLoss`): a NaN
  is the run diverging, a signal for the operator to flag (or stop) the run, never a point to
  drop and forecast around.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from miniseries.contract.schedule import Shape

#: Tissue et al.'s decay factor of the annealing momentum.
DECAY = 0.999
#: Logged points past the warmup a fit needs (and steps into the warmdown before C is fitted to the run).
MIN_FIT_POINTS = 8
#: The prior's standard deviation of C is at least this fraction of its value (with one finished run
#: there is no spread to measure; the tiny sweep's three runs have C = 0.25, 0.65 and 0.77).
PRIOR_C_SPREAD = 0.5
#: Bootstrap replicates and the residual block length (steps).
BOOTSTRAP = 200
BLOCK = 10
#: The fewest residual blocks a trace is cut into (a shorter block when the trace is short).
MIN_BLOCKS = 4
CONFIDENCE = 0.95
#: The normal quantile of CONFIDENCE (two-sided), for the interval's floor.
_Z = 1.959963984540054
#: The exponents a full fit profiles over (L0, A and C are linear given alpha: a global optimum,
#: no starting point to choose). At the low end the curve is linear in log S1.
ALPHA_GRID = np.geomspace(0.01, 2.0, 80)


class ForecastRefused(ValueError):
    """No number: the message says what is missing ("not enough steps yet (have N, need M)")."""


class NonFiniteLoss(ForecastRefused):
    """The trace has a NaN or infinite loss: refused, naming the first such step (the run diverged)."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"the loss is {value} at step {step}: a non-finite loss means the run diverged; "
                         "no forecast is made over it")  # fmt: skip
        self.step = step
        self.value = value


@dataclass(frozen=True)
class Schedule:
    """A run's whole LR schedule and the two areas after every step (normalised by its steps)."""

    multipliers: np.ndarray  # element i: the multiplier of step i + 1 (1-based, as logged)
    s1: np.ndarray
    s2: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.multipliers)

    @property
    def warmup(self) -> int:
        """Steps until the multiplier first reaches its peak."""
        return int(np.argmax(self.multipliers >= self.multipliers.max())) + 1

    @property
    def warmdown_start(self) -> int:
        """The last 1-based step at the peak multiplier (after it, S2 grows)."""
        peak = self.multipliers.max()
        at_peak = np.nonzero(self.multipliers >= peak)[0]
        return int(at_peak[-1]) + 1

    @property
    def final_window(self) -> np.ndarray:
        """1-based steps whose mean is the final loss (the last tenth, as results.json's loss.final)."""
        n = max(1, self.steps // 10)
        return np.arange(self.steps - n + 1, self.steps + 1)


def schedule(multipliers: Sequence[float], decay: float = DECAY) -> Schedule:
    eta = np.asarray(multipliers, dtype=float)
    if eta.ndim != 1 or len(eta) == 0 or not np.all(np.isfinite(eta)) or eta.min() < 0 or eta.max() <= 0:
        raise ValueError(f"a schedule needs one finite multiplier >= 0 per step, some > 0; got {len(eta)} values")
    drops = np.maximum(0.0, np.concatenate([[eta[0]], eta[:-1]]) - eta)
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drops):
        acc = decay * acc + d
        m[i] = acc
    steps = len(eta)
    return Schedule(multipliers=eta, s1=np.cumsum(eta) / steps, s2=np.cumsum(m) / steps)


def law(s1: np.ndarray, s2: np.ndarray, l0: float, a: float, alpha: float, c: float) -> np.ndarray:
    return l0 + a * np.power(s1, -alpha) - c * s2


@dataclass
class CurveFit:
    l0: float
    a: float
    alpha: float
    c: float
    rmse: float
    points: int
    #: Why the law's parameters mean less than they seem (L0 < 0, alpha at the end of its grid), else None.
    degenerate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trace(sched: Schedule, steps: Sequence[int], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    st = np.asarray(steps, dtype=int)
    y = np.asarray(losses, dtype=float)
    if st.shape != y.shape:
        raise ValueError(f"{len(st)} steps but {len(y)} losses")
    if len(st) and (st.min() < 1 or st.max() > sched.steps):
        raise ValueError(f"trace steps {st.min()}..{st.max()} lie outside the schedule's 1..{sched.steps}")
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        i = int(bad[np.argmin(st[bad])])
        raise NonFiniteLoss(int(st[i]), float(y[i]))
    keep = st > sched.warmup
    return st[keep], y[keep]


def fit_curve(sched: Schedule, steps: Sequence[int], losses: Sequence[float]) -> CurveFit:
    """All four parameters from one curve that reaches into its warmdown (a finished run's)."""
    st, y = _trace(sched, steps, losses)
    into_warmdown = int((st > sched.warmdown_start).sum())
    if len(st) < MIN_FIT_POINTS or into_warmdown < MIN_FIT_POINTS:
        raise ForecastRefused(
            f"a full fit needs {MIN_FIT_POINTS} logged steps past the warmup and {MIN_FIT_POINTS} into the warmdown "
            f"(step {sched.warmdown_start} on); have {len(st)} and {into_warmdown}"
        )
    x1, x2 = sched.s1[st - 1], sched.s2[st - 1]
    best: tuple[float, float, tuple[float, ...]] | None = None
    for alpha in ALPHA_GRID:  # profile over alpha: for each, L0, A, C by linear least squares
        l0, a, c = _fit_linear(x1, x2, y, float(alpha), None)
        sse = float(np.sum((law(x1, x2, l0, a, float(alpha), c) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, float(alpha), (l0, a, c))
    assert best is not None
    sse, alpha, (l0, a, c) = best
    notes = [n] if (n := degenerate_note(l0, a, alpha)) else []
    if alpha == float(ALPHA_GRID[-1]):
        notes.append(f"alpha at the upper end of its grid ({alpha:g}): the exponent is not identified by this curve")
    return CurveFit(l0=l0, a=a, alpha=alpha, c=c, rmse=math.sqrt(sse / len(y)), points=len(st),
                    degenerate="; ".join(notes) or None)  # fmt: skip


def degenerate_note(l0: float, a: float, alpha: float) -> str | None:
    """The sentence for a law whose L0 went negative (the log-linear limit), else None."""
    if l0 >= 0:
        return None
    at_edge = " at the low end of its grid" if alpha == float(ALPHA_GRID[0]) else ""
    return (f"degenerate: L0 = {l0:.3g} < 0 with alpha = {alpha:.3g}{at_edge}: the curve is in its log-linear "
            f"regime and the law used is that limit, L ~ {l0 + a:.4g} - {a * alpha:.4g} ln S1 - C S2 (no "
            "irreducible loss is identified; L0 and A apart mean nothing)")  # fmt: skip


@dataclass
class PriorRun:
    """What one finished run of the sweep teaches: its fitted exponent and annealing term, its bpb ratio."""

    run: str
    fit: CurveFit
    bpb_ratio: float | None  # val_bpb / loss.final


@dataclass
class SweepPrior:
    runs: list[PriorRun]

    @property
    def alpha(self) -> float:
        return float(np.median([r.fit.alpha for r in self.runs]))

    @property
    def c(self) -> float:
        return float(np.median([r.fit.c for r in self.runs]))

    @property
    def c_spread(self) -> float:
        """The prior's standard deviation of C: the finished runs' spread, at least PRIOR_C_SPREAD of C."""
        cs = [r.fit.c for r in self.runs]
        spread = float(np.std(cs, ddof=1)) if len(cs) > 1 else 0.0
        return max(spread, PRIOR_C_SPREAD * self.c)

    @property
    def bpb_ratio(self) -> float | None:
        ratios = [r.bpb_ratio for r in self.runs if r.bpb_ratio is not None]
        return float(np.median(ratios)) if ratios else None


def prior_run(
    run: str,
    multipliers: Sequence[float],
    steps: Sequence[int],
    losses: Sequence[float],
    final_loss: float | None,
    val_bpb: float | None,
) -> PriorRun:
    """A finished run as a prior (raises ForecastRefused when its curve cannot be fitted)."""
    fit = fit_curve(schedule(multipliers), steps, losses)
    ratio = val_bpb / final_loss if val_bpb and final_loss else None
    return PriorRun(run=run, fit=fit, bpb_ratio=ratio)


@dataclass
class Forecast:
    step: int  # the last step the forecast saw
    steps: int  # the run's planned steps
    final_loss: float
    final_loss_low: float
    final_loss_high: float
    val_bpb: float | None
    val_bpb_low: float | None
    val_bpb_high: float | None
    fit: CurveFit
    method: str  # "prior" (alpha, C from the sweep), "prior+own-C", "own" (no finished run yet)
    prior_runs: list[str] = field(default_factory=list)
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def need_steps(sched: Schedule) -> int:
    """The shortest trace (last logged step) a forecast accepts."""
    return sched.warmup + MIN_FIT_POINTS


def _fit_linear(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, alpha: float, c: float | None) -> tuple[float, ...]:
    """(L0, A, C) by least squares with alpha fixed, and C too unless it is None; C >= 0, L0 free.

    L0 is not held >= 0: on short horizons L0 and alpha trade off (the curve is close to
    linear in log S1, the alpha -> 0 limit), and the extrapolation is what matters; the
    caller says when L0 went negative (`degenerate_note`).
    """
    power = np.power(x1, -alpha)
    if c is not None:
        sol = np.linalg.lstsq(np.stack([np.ones_like(x1), power], 1), y + c * x2, rcond=None)[0]
        return float(sol[0]), float(sol[1]), c
    sol = np.linalg.lstsq(np.stack([np.ones_like(x1), power, -x2], 1), y, rcond=None)[0]
    if sol[2] < 0:  # annealing never raises the loss: refit without it
        return _fit_linear(x1, x2, y, alpha, 0.0)
    return float(sol[0]), float(sol[1]), float(sol[2])


def _fit_shrunk(
    x1: np.ndarray, x2: np.ndarray, y: np.ndarray, alpha: float, c_prior: float, tau: float
) -> tuple[float, ...]:
    """(L0, A, C) with alpha fixed and C the run's own estimate shrunk to `c_prior` (a MAP estimate).

    The prior on C is Gaussian (mean c_prior, standard deviation tau); the loss noise's variance
    is the residuals' of the fit at c_prior. Both as one least squares: the data rows plus one
    pseudo-observation of C. Before the warmdown (S2 = 0) C is the prior's exactly.
    """
    l0, a, _ = _fit_linear(x1, x2, y, alpha, c_prior)
    if tau <= 0 or not np.any(x2 > 0):
        return l0, a, c_prior
    var = float(np.mean((law(x1, x2, l0, a, alpha, c_prior) - y) ** 2))
    weight = math.sqrt(max(var, 1e-12)) / tau  # sqrt of the penalty's weight, variance / tau^2
    design = np.stack([np.ones_like(x1), np.power(x1, -alpha), -x2], 1)
    design = np.vstack([design, [0.0, 0.0, weight]])
    sol = np.linalg.lstsq(design, np.concatenate([y, [weight * c_prior]]), rcond=None)[0]
    if sol[2] < 0:  # annealing never raises the loss
        return _fit_linear(x1, x2, y, alpha, 0.0)
    return float(sol[0]), float(sol[1]), float(sol[2])


@dataclass
class _Draws:
    """What each bootstrap resample draws one of: a finished run's alpha, C (None: fitted) and bpb
    ratio (None: the sweep's), and the prior's spread of C (0: no shrinking)."""

    alphas: list[float]
    cs: list[float | None]
    ratios: list[float | None]
    tau: float


def _fit_trace(sched: Schedule, st: np.ndarray, y: np.ndarray, last: int,
               prior: SweepPrior | None) -> tuple[CurveFit, str, list[str], _Draws]:  # fmt: skip
    """The run's curve fitted now: on the sweep's alpha and C (shrunk to the run's own C once it is
    in its warmdown) given finished runs, else entirely its own (which needs warmdown steps).
    Returns the fit, its method, the prior's runs and what the bootstrap draws from."""
    x1, x2 = sched.s1[st - 1], sched.s2[st - 1]
    own_c = int((st > sched.warmdown_start).sum()) >= MIN_FIT_POINTS
    if prior is None or not prior.runs:
        if not own_c:
            raise ForecastRefused(
                f"not enough steps yet (have {last}, need {sched.warmdown_start + MIN_FIT_POINTS}): with no finished "
                f"run in the sweep to learn the annealing term from, the forecast needs {MIN_FIT_POINTS} steps of "
                f"the warmdown, which starts after step {sched.warmdown_start}"
            )
        fit = fit_curve(sched, st, y)
        return fit, "own", [], _Draws([fit.alpha], [None], [None], 0.0)
    tau = prior.c_spread
    l0, a, c = _fit_shrunk(x1, x2, y, prior.alpha, prior.c, tau)
    pred = law(x1, x2, l0, a, prior.alpha, c)
    fit = CurveFit(
        l0=l0, a=a, alpha=prior.alpha, c=c, rmse=float(np.sqrt(np.mean((pred - y) ** 2))), points=len(st),
        degenerate=degenerate_note(l0, a, prior.alpha),
    )  # fmt: skip
    draws = _Draws([r.fit.alpha for r in prior.runs], [r.fit.c for r in prior.runs],
                   [r.bpb_ratio for r in prior.runs], tau)  # fmt: skip
    return fit, "prior+own-C" if own_c else "prior", [r.run for r in prior.runs], draws


def _bootstrap(sched: Schedule, st: np.ndarray, y: np.ndarray, fit: CurveFit, draws: _Draws, ratio: float | None,
               bootstrap: int, seed: int) -> tuple[list[float], list[float], int]:  # fmt: skip
    """Final losses (and val bpbs, where a ratio is known) refitted on block-resampled residuals of
    the run, each with the alpha, C and ratio of one finished run; and the block length used."""
    x1, x2 = sched.s1[st - 1], sched.s2[st - 1]
    window = sched.final_window - 1
    rng = np.random.default_rng(seed)
    fitted = law(x1, x2, fit.l0, fit.a, fit.alpha, fit.c)
    resid = y - fitted
    n = len(y)
    block = max(1, min(BLOCK, n // MIN_BLOCKS))
    finals, bpbs = [], []
    for _ in range(bootstrap):
        starts = rng.integers(0, n - block + 1, size=math.ceil(n / block))
        boot = fitted + np.concatenate([resid[s : s + block] for s in starts])[:n]
        j = int(rng.integers(0, len(draws.alphas)))
        alpha = draws.alphas[j]
        try:
            cj = draws.cs[j]
            l0, a, c = (
                _fit_linear(x1, x2, boot, alpha, None)
                if cj is None
                else _fit_shrunk(x1, x2, boot, alpha, cj, draws.tau)
            )
        except (ValueError, RuntimeError):
            continue
        f = float(np.mean(law(sched.s1[window], sched.s2[window], l0, a, alpha, c)))
        finals.append(f)
        r = draws.ratios[j] if draws.ratios[j] is not None else ratio
        if r is not None:
            bpbs.append(f * r)
    return finals, bpbs, block


def forecast_run(
    multipliers: Sequence[float],
    steps: Sequence[int],
    losses: Sequence[float],
    prior: SweepPrior | None = None,
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> Forecast:
    """The run's final training loss (and val bpb, given a prior with a ratio) from its trace so far.

    `multipliers`: the whole planned schedule, one per step (contract.schedule.lr_multipliers);
    `steps`, `losses`: the logged trace (1-based steps, the trainer's loss_curve.jsonl).
    """
    sched = schedule(multipliers)
    last = int(max(steps)) if len(steps) else 0
    need = need_steps(sched)
    if last < need:
        raise ForecastRefused(f"not enough steps yet (have {last}, need {need})")
    st, y = _trace(sched, steps, losses)
    if len(st) < MIN_FIT_POINTS:
        raise ForecastRefused(f"not enough logged steps yet (have {len(st)} past the warmup, need {MIN_FIT_POINTS})")
    fit, method, names, draws = _fit_trace(sched, st, y, last, prior)
    window = sched.final_window - 1
    final = float(np.mean(law(sched.s1[window], sched.s2[window], fit.l0, fit.a, fit.alpha, fit.c)))
    ratio = prior.bpb_ratio if prior is not None and prior.runs else None
    finals, bpbs, block = _bootstrap(sched, st, y, fit, draws, ratio, bootstrap, seed)
    lo_q, hi_q = (1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100
    low, high = (float(np.percentile(finals, lo_q)), float(np.percentile(finals, hi_q))) if finals else (final, final)
    # the floor: the level's standard error from the residuals, one independent draw per block
    floor = _Z * fit.rmse / math.sqrt(max(1, len(y) // block))
    low, high = min(low, final - floor), max(high, final + floor)
    val = vlow = vhigh = None
    if ratio is not None:
        val = final * ratio
        vlow, vhigh = (float(np.percentile(bpbs, lo_q)), float(np.percentile(bpbs, hi_q))) if bpbs else (val, val)
        vlow, vhigh = min(vlow, val - floor * ratio), max(vhigh, val + floor * ratio)
    return Forecast(
        step=last,
        steps=sched.steps,
        final_loss=final,
        final_loss_low=low,
        final_loss_high=high,
        val_bpb=val,
        val_bpb_low=vlow,
        val_bpb_high=vhigh,
        fit=fit,
        method=method,
        prior_runs=names,
    )


# -----------------------------------------------------------------------------
# Replay: forecast a finished sweep's runs from a cut of their curves


@dataclass
class RunTrace:
    """A finished run as the replay needs it (read from results.json and loss_curve.jsonl)."""

    run: str
    multipliers: list[float]  # the whole schedule, one per step
    steps: list[int]
    losses: list[float]
    final_loss: float | None  # results.json loss.final
    val_bpb: float | None
    finished_at: float = 0.0  # results.json created_at: which runs were "earlier"


@dataclass
class ReplayRow:
    run: str
    cut_step: int
    steps: int
    forecast: Forecast | None
    refused: str | None
    actual_loss: float | None
    actual_val_bpb: float | None

    @property
    def loss_error(self) -> float | None:
        """Relative error of the final training loss forecast, (forecast - actual) / actual."""
        if self.forecast is None or not self.actual_loss:
            return None
        return (self.forecast.final_loss - self.actual_loss) / self.actual_loss

    @property
    def val_bpb_error(self) -> float | None:
        if self.forecast is None or self.forecast.val_bpb is None or not self.actual_val_bpb:
            return None
        return (self.forecast.val_bpb - self.actual_val_bpb) / self.actual_val_bpb

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "cut_step": self.cut_step,
            "steps": self.steps,
            "forecast": self.forecast.to_dict() if self.forecast else None,
            "refused": self.refused,
            "actual_loss": self.actual_loss,
            "actual_val_bpb": self.actual_val_bpb,
            "loss_error": self.loss_error,
            "val_bpb_error": self.val_bpb_error,
        }


def median_abs(values: Sequence[float | None]) -> float | None:
    vals = [abs(v) for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def replay(
    runs: Sequence[RunTrace], upto: float, priors: str = "earlier", *, bootstrap: int = BOOTSTRAP
) -> list[ReplayRow]:
    """Each run forecast from the first `upto` of its steps.

    priors="earlier": the prior is the runs that had finished before this one (by results.json's
    created_at), what a live forecast would have known at best; "others": every other run of the
    sweep (leave one out), the most a forecast can learn from its sweep.
    """
    if not 0.0 < upto <= 1.0:
        raise ValueError(f"--upto must be a fraction in (0, 1], got {upto}")
    if priors not in ("earlier", "others"):
        raise ValueError(f"priors must be 'earlier' or 'others', got {priors!r}")
    fitted: dict[str, PriorRun | None] = {}
    for r in runs:
        try:
            fitted[r.run] = prior_run(r.run, r.multipliers, r.steps, r.losses, r.final_loss, r.val_bpb)
        except (ForecastRefused, ValueError):
            fitted[r.run] = None  # a curve the law cannot be fitted to teaches nothing
    rows = []
    for r in runs:
        total = len(r.multipliers)
        cut = max(1, math.floor(upto * total))
        keep = [i for i, s in enumerate(r.steps) if s <= cut]
        others = [o for o in runs if o.run != r.run and (priors == "others" or o.finished_at < r.finished_at)]
        prior_runs = [p for o in others if (p := fitted[o.run]) is not None]
        forecast, refused = None, None
        try:
            forecast = forecast_run(
                r.multipliers,
                [r.steps[i] for i in keep],
                [r.losses[i] for i in keep],
                SweepPrior(prior_runs) if prior_runs else None,
                bootstrap=bootstrap,
            )
        except ForecastRefused as e:
            refused = str(e)
        rows.append(ReplayRow(r.run, cut, total, forecast, refused, r.final_loss, r.val_bpb))
    return rows


# -----------------------------------------------------------------------------
# Live: what the operator (or the local runner) calls for a run that is training


def live_forecast(
    store: Any,
    namespace: str,
    sweep: str,
    run: str,
    *,
    steps: int,
    warmup_steps: int,
    warmdown_ratio: float,
    finished_runs: Sequence[str],
    shape: Shape = "linear",
    warmdown_steps: int | None = None,
    bootstrap: int = BOOTSTRAP,
) -> Forecast:
    """Forecast `run` from its loss_curve.jsonl so far, with alpha, C and the bpb ratio learned
    from `finished_runs` (their results.json and curves). `steps`, `warmup_steps`,
    `warmdown_ratio`, `shape` and `warmdown_steps` are the run's plan (status.plan /
    spec.training; a wsd run's (1-sqrt) cooldown over its own steps, control.wsd.warmdown_of).
    Each finished run's schedule is the one its results.json records (a (1-sqrt) branch, a trunk
    without warmdown), never assumed from the spec. Raises ForecastRefused with the sentence to
    show ("not enough steps yet (have N, need M)", ...)."""
    from miniseries.contract.layout import RunLayout
    from miniseries.contract.results import ResultsError, read_loss_curve, read_results
    from miniseries.contract.schedule import lr_multipliers, recorded_multipliers

    priors = []
    for name in finished_runs:
        layout = RunLayout(namespace, sweep, name)
        try:
            res = read_results(store, layout)
            curve = read_loss_curve(store, layout)
        except (ResultsError, ValueError):
            continue
        if res is None or not curve:
            continue
        try:
            mult = recorded_multipliers(res.steps, res.provenance.lr_schedule if res.provenance else {},
                                        warmup_steps=warmup_steps, warmdown_ratio=warmdown_ratio)  # fmt: skip
        except ValueError:
            continue  # a schedule this code cannot rebuild: no prior rather than a wrong one
        if mult is None:
            continue
        try:
            priors.append(
                prior_run(
                    name,
                    mult,
                    [int(r["step"]) for r in curve],
                    [float(r["loss"]) for r in curve],
                    res.loss.final,
                    res.val_bpb,
                )
            )
        except (ForecastRefused, ValueError):
            continue
    curve = read_loss_curve(store, RunLayout(namespace, sweep, run))
    return forecast_run(
        lr_multipliers(steps, warmup_steps, warmdown_ratio, shape=shape, warmdown_steps=warmdown_steps),
        [int(r["step"]) for r in curve],
        [float(r["loss"]) for r in curve],
        SweepPrior(priors) if priors else None,
        bootstrap=bootstrap,
    )
