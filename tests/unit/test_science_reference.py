"""The report's reference CORE levels are the published GPT-2 results, re-scored by the contract's CORE."""

from __future__ import annotations

import pytest

from miniseries.contract.core import DCLM_V1_RANDOM_BASELINES, read_accuracy_csv, score_tasks
from miniseries.science.reference import DEFAULT_CORE_TARGETS, GPT2_CORE
from tests.support.core_bundle import REFERENCE_BUNDLE

CSV = {
    "GPT-2 small (124M)": "openai-community-gpt2.csv",
    "GPT-2 medium (355M)": "openai-community-gpt2-medium.csv",
    "GPT-2 large (774M)": "openai-community-gpt2-large.csv",
    "GPT-2 XL (1.5B)": "openai-community-gpt2-xl.csv",
}


@pytest.mark.skipif(REFERENCE_BUNDLE is None, reason="shared/data/eval_bundle not present")
@pytest.mark.parametrize("model", sorted(CSV))
def test_gpt2_reference_levels_are_the_rescored_published_results(model: str) -> None:
    assert REFERENCE_BUNDLE is not None
    path = REFERENCE_BUNDLE / "reference" / CSV[model]
    result = score_tasks(read_accuracy_csv(path.read_text(), str(path)), DCLM_V1_RANDOM_BASELINES)
    assert result.core is not None
    assert GPT2_CORE[model] == pytest.approx(result.core, abs=1e-6)


def test_default_targets_are_gpt2_small_and_xl() -> None:
    assert {
        "GPT-2 small": GPT2_CORE["GPT-2 small (124M)"],
        "GPT-2 XL": GPT2_CORE["GPT-2 XL (1.5B)"],
    } == DEFAULT_CORE_TARGETS
