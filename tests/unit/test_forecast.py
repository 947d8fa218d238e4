"""The annealing-law forecast (science/forecast.py) and its replay command, on synthetic curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from miniseries.cli import main as cli_main
from miniseries.contract.layout import RunLayout
from miniseries.contract.results import LossSummary, Provenance, RunResults
from miniseries.contract.schedule import lr_multiplier, lr_multipliers, warmdown_start
from miniseries.science.forecast import (
    ForecastRefused,
    NonFiniteLoss,
    RunTrace,
    SweepPrior,
    fit_curve,
    forecast_run,
    law,
    median_abs,
    prior_run,
    replay,
    schedule,
)

WARMUP, WARMDOWN = 5, 0.4
ALPHA, C = 0.4, 0.5  # shared by the synthetic sweep (areas normalised by each run's steps)
RUNS = {"d1": (60, 2.6, 1.2), "d2": (150, 2.2, 1.1), "d3": (400, 1.9, 1.0)}  # steps, L0, A


def synthetic(steps: int, l0: float, a: float, noise: float = 0.0, seed: int = 0) -> tuple[list[float], np.ndarray]:
    mult = lr_multipliers(steps, WARMUP, WARMDOWN)
    sched = schedule(mult)
    loss = law(sched.s1, sched.s2, l0, a, ALPHA, C)
    if noise:
        loss = loss + np.random.default_rng(seed).normal(0, noise, steps)
    return mult, loss


def final_of(steps: int, l0: float, a: float) -> float:
    """results.json's loss.final of the noise-free curve: the mean of the last tenth."""
    _, loss = synthetic(steps, l0, a)
    return float(np.mean(loss[-max(1, steps // 10) :]))


def test_schedule_is_the_trainers_and_the_areas_follow_the_paper() -> None:
    mult = lr_multipliers(100, 10, 0.2)
    assert mult[:10] == [(i + 1) / 10 for i in range(10)] and mult[10:80] == [1.0] * 70
    assert mult[80] == 1.0 and mult[99] == pytest.approx(0.05) and warmdown_start(100, 0.2) == 80
    assert all(lr_multiplier(i, 100, 10, 0.2) == m for i, m in enumerate(mult))
    s = schedule(mult, decay=1.0)  # no decay: m_i is the total drop so far, S2 its running sum
    assert s.s1[-1] * 100 == pytest.approx(sum(mult))
    assert s.s2[79] == 0.0  # warmup and the constant phase anneal nothing
    momentum = 1.0 - np.array(mult[80:])  # with decay 1, m_i = the whole drop from the peak so far
    assert s.s2[-1] * 100 == pytest.approx(momentum.sum())
    lam = schedule(mult)  # the paper's 0.999 forgets a little of the early drops
    assert 0 < lam.s2[-1] < s.s2[-1]
    assert (s.warmup, s.warmdown_start) == (10, 81)  # step 81 (1-based) is still at the peak


def test_a_full_curve_recovers_its_parameters() -> None:
    mult, loss = synthetic(400, 1.9, 1.0)
    steps = list(range(1, 401))
    fit = fit_curve(schedule(mult), steps, loss.tolist())
    assert fit.alpha == pytest.approx(ALPHA, rel=0.05)
    assert fit.c == pytest.approx(C, rel=0.1)
    assert fit.rmse < 1e-3
    noisy_mult, noisy = synthetic(400, 1.9, 1.0, noise=0.02, seed=1)
    nfit = fit_curve(schedule(noisy_mult), steps, noisy.tolist())
    assert nfit.alpha == pytest.approx(ALPHA, rel=0.3) and nfit.c == pytest.approx(C, rel=0.3)


def test_forecast_from_half_a_noisy_curve_with_a_prior_from_finished_runs() -> None:
    priors = []
    for name in ("d1", "d2"):
        steps, l0, a = RUNS[name]
        mult, loss = synthetic(steps, l0, a, noise=0.02, seed=len(name) + steps)
        priors.append(prior_run(name, mult, range(1, steps + 1), loss.tolist(), final_of(steps, l0, a), None))
    steps, l0, a = RUNS["d3"]
    mult, loss = synthetic(steps, l0, a, noise=0.02, seed=3)
    f = forecast_run(mult, list(range(1, 201)), loss[:200].tolist(), SweepPrior(priors))
    truth = final_of(steps, l0, a)
    assert f.method == "prior" and f.prior_runs == ["d1", "d2"] and f.step == 200 and f.steps == 400
    assert f.final_loss == pytest.approx(truth, rel=0.02)
    assert f.final_loss_low <= f.final_loss <= f.final_loss_high
    assert f.val_bpb is None  # no finished run had a val bpb: no ratio to carry over
    # into the warmdown, the run's own C takes over
    late = forecast_run(mult, list(range(1, 331)), loss[:330].tolist(), SweepPrior(priors))
    assert late.method == "prior+own-C" and late.final_loss == pytest.approx(truth, rel=0.01)


def test_val_bpb_is_the_loss_times_the_sweeps_ratio() -> None:
    steps, l0, a = RUNS["d1"]
    mult, loss = synthetic(steps, l0, a)
    p = prior_run("d1", mult, range(1, steps + 1), loss.tolist(), 3.0, 1.8)
    assert p.bpb_ratio == pytest.approx(0.6)
    steps, l0, a = RUNS["d2"]
    mult, loss = synthetic(steps, l0, a)
    f = forecast_run(mult, list(range(1, 76)), loss[:75].tolist(), SweepPrior([p]))
    assert f.val_bpb == pytest.approx(0.6 * f.final_loss)
    assert f.val_bpb_low is not None and f.val_bpb_low <= f.val_bpb <= (f.val_bpb_high or 0)


def test_short_traces_get_a_sentence_not_a_number() -> None:
    steps, l0, a = RUNS["d2"]
    mult, loss = synthetic(steps, l0, a)
    d1_mult, d1_loss = synthetic(60, 2.6, 1.2)
    prior = SweepPrior([prior_run("d1", d1_mult, range(1, 61), d1_loss.tolist(), None, None)])
    with pytest.raises(ForecastRefused, match=r"^not enough steps yet \(have 12, need 13\)$"):
        forecast_run(mult, list(range(1, 13)), loss[:12].tolist(), prior)
    with pytest.raises(ForecastRefused, match=r"not enough steps yet \(have 0, need 13\)"):
        forecast_run(mult, [], [], prior)
    # no finished run to learn the annealing term from, and no warmdown seen yet
    with pytest.raises(ForecastRefused, match=r"not enough steps yet \(have 75, need 99\).*no finished run"):
        forecast_run(mult, list(range(1, 76)), loss[:75].tolist(), None)
    own = forecast_run(mult, list(range(1, 121)), loss[:120].tolist(), None)  # 8+ steps of warmdown: its own fit
    assert own.method == "own" and own.final_loss == pytest.approx(final_of(steps, l0, a), rel=0.01)
    with pytest.raises(ValueError, match="lie outside the schedule"):
        forecast_run(mult, list(range(1, 200)), [1.0] * 199, prior)


def test_a_non_finite_loss_is_refused_naming_its_step() -> None:
    """Issue 27 item 5: a NaN at step 80 used to be dropped and the run forecast around it."""
    steps, l0, a = RUNS["d2"]
    mult, loss = synthetic(steps, l0, a, noise=0.01)
    d1_mult, d1_loss = synthetic(60, 2.6, 1.2)
    prior = SweepPrior([prior_run("d1", d1_mult, range(1, 61), d1_loss.tolist(), None, None)])
    for bad in (float("nan"), float("inf")):
        y = loss[:100].copy()
        y[79] = bad
        with pytest.raises(NonFiniteLoss, match=rf"the loss is {bad} at step 80") as e:
            forecast_run(mult, list(range(1, 101)), y.tolist(), prior)
        assert e.value.step == 80
    y = loss.copy()
    y[2] = float("nan")  # in the warmup too: a finished run with a NaN is no prior either
    with pytest.raises(NonFiniteLoss, match="at step 3"):
        prior_run("d2", mult, range(1, steps + 1), y.tolist(), None, None)


@pytest.mark.parametrize("points", [8, 9, 10])
def test_the_interval_never_collapses_with_few_points_past_warmup(points: int) -> None:
    """With 8-10 points the bootstrap block covered the whole trace: every replicate was the data
    itself, and the 95% interval had zero width."""
    steps, l0, a = RUNS["d2"]
    mult, loss = synthetic(steps, l0, a, noise=0.02, seed=points)
    d1_mult, d1_loss = synthetic(60, 2.6, 1.2, noise=0.02)
    prior = SweepPrior([prior_run("d1", d1_mult, range(1, 61), d1_loss.tolist(), None, None)])
    last = WARMUP + points
    f = forecast_run(mult, list(range(1, last + 1)), loss[:last].tolist(), prior)
    assert f.fit.points == points
    width = f.final_loss_high - f.final_loss_low
    assert width > 2 * f.fit.rmse / np.sqrt(points), (f.final_loss_low, f.final_loss_high, f.fit.rmse)


def test_a_degenerate_law_says_so_and_what_it_fell_back_to() -> None:
    """Issue 32: the tiny sweep's d2 forecast carried L0 = -42.1 with alpha = 0.01 (the grid's edge)
    and said nothing. A curve linear in log S1 (the alpha -> 0 limit) drives L0 negative: the fit says
    it is degenerate and gives the log-linear law it is, whose slope is the one the curve was made with."""
    steps = 150
    mult = lr_multipliers(steps, WARMUP, WARMDOWN)
    sched = schedule(mult)
    loss = 3.0 - 0.8 * np.log(sched.s1) - C * sched.s2  # no floor: L0 -> -inf as alpha -> 0
    fit = fit_curve(sched, list(range(1, steps + 1)), loss.tolist())
    assert fit.l0 < 0 and fit.alpha == pytest.approx(0.01)
    assert fit.degenerate is not None and fit.degenerate.startswith("degenerate: L0 = ")
    assert "at the low end of its grid" in fit.degenerate and "log-linear regime" in fit.degenerate
    assert fit.a * fit.alpha == pytest.approx(0.8, rel=0.02)  # the slope it states is the curve's
    assert f"- {fit.a * fit.alpha:.4g} ln S1" in fit.degenerate
    d1_mult, d1_loss = synthetic(60, 2.6, 1.2)
    prior = SweepPrior([prior_run("d1", d1_mult, range(1, 61), d1_loss.tolist(), None, None)])
    f = forecast_run(mult, list(range(1, 76)), loss[:75].tolist(), prior)
    assert (f.fit.l0 < 0) is (f.fit.degenerate is not None)
    mult400, loss400 = synthetic(400, 1.9, 1.0)
    assert fit_curve(schedule(mult400), list(range(1, 401)), loss400.tolist()).degenerate is None


# -----------------------------------------------------------------------------
# replay and the CLI, on a fabricated finished sweep


def write_sweep(root: Path, namespace: str = "team", sweep: str = "fab") -> Path:
    """Three finished runs in the store layout: results.json (with provenance) and loss_curve.jsonl."""
    for i, (name, (steps, l0, a)) in enumerate(RUNS.items()):
        run = RunLayout(namespace, sweep, name)
        mult, loss = synthetic(steps, l0, a, noise=0.01, seed=i)
        (root / run.root).mkdir(parents=True)
        rows = [{"step": s + 1, "tokens": 0, "flops": 0.0, "loss": float(loss[s]), "lr": mult[s]} for s in range(steps)]
        (root / run.loss_curve).write_text("".join(json.dumps(r) + "\n" for r in rows))
        final = float(np.mean(loss[-steps // 10 :]))
        res = RunResults(sweep=sweep, run=name, depth=i + 1, shape={}, params={}, target_tokens=steps, tokens=steps,
                         steps=steps, total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1.0,
                         gpu_seconds=0.0, world_size=1, device="cpu", loss=LossSummary(final=final, points=steps),
                         val_bpb=final * 0.58, created_at=1000.0 + i,
                         provenance=Provenance(lr_schedule={"warmup_steps": WARMUP, "warmdown_ratio": WARMDOWN}))  # fmt: skip
        (root / run.results).write_bytes(res.to_json())
    return root / namespace / sweep


def test_replay_forecasts_each_run_from_the_earlier_ones(tmp_path: Path) -> None:
    traces = []
    for i, (name, (steps, l0, a)) in enumerate(RUNS.items()):
        mult, loss = synthetic(steps, l0, a, noise=0.01, seed=i)
        final = float(np.mean(loss[-steps // 10 :]))
        traces.append(RunTrace(name, mult, list(range(1, steps + 1)), loss.tolist(), final, final * 0.58, 1000.0 + i))
    rows = replay(traces, 0.5, "earlier")
    assert [r.run for r in rows] == ["d1", "d2", "d3"]
    assert rows[0].forecast is None and "no finished run" in (rows[0].refused or "")  # nothing finished before d1
    assert [r.forecast.prior_runs for r in rows[1:]] == [["d1"], ["d1", "d2"]]  # type: ignore[union-attr]
    assert all(abs(r.val_bpb_error or 1) < 0.02 for r in rows[1:])
    others = replay(traces, 0.5, "others")
    assert all(r.forecast is not None for r in others)
    assert median_abs([r.val_bpb_error for r in others]) < 0.02  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"--upto must be a fraction in \(0, 1\], got 1.5"):
        replay(traces, 1.5)


def test_forecast_command_on_a_fabricated_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = write_sweep(tmp_path / "store")
    assert cli_main(["forecast", str(sweep_dir), "--upto", "0.5", "--priors", "others", "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["upto"] == 0.5 and out["forecast"] == 3 and out["refused"] == 0
    assert [r["run"] for r in out["runs"]] == ["d1", "d2", "d3"]
    assert [r["cut_step"] for r in out["runs"]] == [30, 75, 200]
    assert out["median_abs_val_bpb_error"] < 0.02
    assert cli_main(["forecast", sweep_dir.as_uri(), "--upto", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "d1: not enough steps yet (have 6, need 13)" in text and "median |error|" in text


def test_forecast_command_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ns" / "empty").mkdir(parents=True)
    assert cli_main(["forecast", str(tmp_path / "ns" / "empty")]) == 2
    assert "no run with a results.json under" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["forecast", str(tmp_path), "--upto", "0"])
    assert "--upto must be a fraction in (0, 1], got 0.0" in capsys.readouterr().err


def test_live_forecast_reads_the_store(tmp_path: Path) -> None:
    from miniseries.contract.store import open_store
    from miniseries.science.forecast import live_forecast

    write_sweep(tmp_path)
    store = open_store(tmp_path.as_uri())
    d3 = RunLayout("team", "fab", "d3")
    (tmp_path / d3.results).unlink()  # d3 is still training: 120 of its 400 steps logged
    lines = (tmp_path / d3.loss_curve).read_text().splitlines()
    (tmp_path / d3.loss_curve).write_text("\n".join(lines[:120]) + "\n")
    plan = dict(steps=400, warmup_steps=WARMUP, warmdown_ratio=WARMDOWN)
    f = live_forecast(store, "team", "fab", "d3", finished_runs=["d1", "d2"], **plan)
    assert f.step == 120 and f.prior_runs == ["d1", "d2"] and f.val_bpb is not None
    assert f.final_loss == pytest.approx(final_of(*RUNS["d3"]), rel=0.03)
    (tmp_path / d3.loss_curve).write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(ForecastRefused, match=r"not enough steps yet \(have 10, need 13\)"):
        live_forecast(store, "team", "fab", "d3", finished_runs=["d1", "d2"], **plan)


def test_live_forecast_follows_a_wsd_runs_1_sqrt_cooldown(tmp_path: Path) -> None:
    """A wsd sweep: each finished branch's recorded (1-sqrt) cooldown (its results.json) and the in-flight
    run's planned one (control.wsd.warmdown_of) drive the forecast, which then recovers the law's exponent
    and annealing term (the forecast once rebuilt every prior from the spec's linear warmdownRatio)."""
    from miniseries.contract.schedule import recorded_multipliers, schedule_record
    from miniseries.contract.store import open_store
    from miniseries.science.forecast import live_forecast

    cooldown = {name: steps // 5 for name, (steps, _, _) in RUNS.items()}  # cooldownFraction 0.2
    truth = {}
    for i, (name, (steps, l0, a)) in enumerate(RUNS.items()):
        run = RunLayout("team", "wsd", name)
        mult = lr_multipliers(steps, WARMUP, WARMDOWN, shape="sqrt", warmdown_steps=cooldown[name])
        sched = schedule(mult)
        loss = law(sched.s1, sched.s2, l0, a, ALPHA, C) + np.random.default_rng(i).normal(0, 0.01, steps)
        truth[name] = float(np.mean(law(sched.s1, sched.s2, l0, a, ALPHA, C)[-steps // 10 :]))
        (tmp_path / run.root).mkdir(parents=True)
        rows = [{"step": s + 1, "loss": float(loss[s]), "lr": mult[s]} for s in range(steps)]
        (tmp_path / run.loss_curve).write_text("".join(json.dumps(r) + "\n" for r in rows))
        record = schedule_record(steps, WARMUP, WARMDOWN, shape="sqrt", warmdown_steps=cooldown[name])
        assert record["warmdown_shape"] == "sqrt" and record["warmdown_fraction"] == 0.2
        res = RunResults(sweep="wsd", run=name, depth=i + 1, shape={}, params={}, target_tokens=steps, tokens=steps,
                         steps=steps, total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1.0,
                         gpu_seconds=0.0, world_size=1, device="cpu", loss=LossSummary(final=truth[name], points=steps),
                         val_bpb=truth[name] * 0.58, provenance=Provenance(lr_schedule=record))  # fmt: skip
        (tmp_path / run.results).write_bytes(res.to_json())
    d3 = RunLayout("team", "wsd", "d3")
    (tmp_path / d3.results).unlink()  # d3 is at step 200 of 400, before its cooldown (step 320 on)
    (tmp_path / d3.loss_curve).write_text("".join((tmp_path / d3.loss_curve).read_text().splitlines(True)[:200]))
    store, plan = open_store(tmp_path.as_uri()), dict(steps=400, warmup_steps=WARMUP, warmdown_ratio=WARMDOWN)
    f = live_forecast(store, "team", "wsd", "d3", finished_runs=["d1", "d2"], shape="sqrt", warmdown_steps=80, **plan)
    assert f.prior_runs == ["d1", "d2"] and f.final_loss is not None
    assert abs(f.final_loss / truth["d3"] - 1) < 0.01
    assert f.fit.alpha == pytest.approx(ALPHA, rel=0.1) and f.fit.c == pytest.approx(C, rel=0.25), f.fit
    # the schedule each prior was fitted on is the recorded one, step for step
    d2 = RunResults.from_json((tmp_path / RunLayout("team", "wsd", "d2").results).read_bytes())
    assert recorded_multipliers(150, d2.provenance.lr_schedule) == lr_multipliers(  # type: ignore[union-attr]
        150, WARMUP, WARMDOWN, shape="sqrt", warmdown_steps=30
    )


def test_c_is_shrunk_to_the_prior_until_the_warmdown_carries_information() -> None:
    """The run's own C is trusted as its warmdown's annealing area grows: its first noisy warmdown
    steps once set C alone (a switch after 8 of them) and the forecast ran away; near the end its
    own C, not the prior's, drives the forecast."""
    steps, l0, a = RUNS["d3"]
    priors = []
    for name in ("d1", "d2"):
        s, pl0, pa = RUNS[name]
        mult, loss = synthetic(s, pl0, pa, noise=0.02, seed=s)
        priors.append(prior_run(name, mult, range(1, s + 1), loss.tolist(), None, None))
    prior = SweepPrior(priors)
    mult = lr_multipliers(steps, WARMUP, WARMDOWN)
    sched = schedule(mult)
    own_c = 2.0 * C  # this run anneals twice as much as the sweep's others
    clean = law(sched.s1, sched.s2, l0, a, ALPHA, own_c)
    truth = float(np.mean(clean[-steps // 10 :]))
    start = sched.warmdown_start
    for seed in range(5):
        noisy = clean + np.random.default_rng(seed).normal(0, 0.05, steps)
        early = forecast_run(mult, list(range(1, start + 11)), noisy[: start + 10].tolist(), prior, bootstrap=20)
        assert early.method == "prior+own-C"
        assert abs(early.fit.c - prior.c) < 2 * prior.c_spread, (seed, early.fit.c, prior.c)
        assert abs(early.final_loss - truth) < 0.1, (seed, early.final_loss, truth)
        assert early.final_loss_low < early.final_loss < early.final_loss_high
        late = forecast_run(mult, list(range(1, 381)), noisy[:380].tolist(), prior, bootstrap=20)
        assert abs(late.fit.c - own_c) < abs(late.fit.c - prior.c), (seed, late.fit.c)
        assert abs(late.final_loss - truth) < 0.02, (seed, late.final_loss, truth)
