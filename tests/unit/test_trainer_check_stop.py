"""The check's C4 judgement: a trainer that exits 75 on SIGTERM but resumes from an older save (nanochat's
base_train, which saves only every N steps) is partial, naming the steps a stop loses; one with no
checkpoint at all still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miniseries.contract.preemption import EXIT_PREEMPTED
from miniseries.local.trainer_check import FAIL, PARTIAL, PASS, Attempt, Session, judge_stop


def session(rc: int, signalled: int, checkpoints: tuple[int, ...]) -> Session:
    none: Any = None  # judge_stop reads only the attempts and the checkpoints
    s = Session(store=none, run=none, planned=none, argv=[], uid="u", metrics_port=0, log=Path("log"),
                keys_before=set(), first=Attempt(), checkpoints_before_second=checkpoints)  # fmt: skip
    s.first.rc, s.first.signalled_at_step = rc, signalled
    return s


def test_an_older_checkpoint_after_a_stop_is_partial_with_the_steps_lost() -> None:
    status, reason = judge_stop(session(EXIT_PREEMPTED, 25, (10, 20)))
    assert status == PARTIAL and "loses 5 steps" in reason and "step 20" in reason


def test_a_checkpoint_at_the_stop_passes_and_none_at_all_fails() -> None:
    assert judge_stop(session(EXIT_PREEMPTED, 25, (10, 25)))[0] == PASS
    assert judge_stop(session(EXIT_PREEMPTED, 25, ()))[0] == FAIL
    assert judge_stop(session(1, 25, (20,)))[0] == FAIL
