"""The API does not depend on the control loop, and the spec's public names live on in `miniseries.api.spec`.

Checked in a clean interpreter (sys.modules tells the truth), like test_import_purity.
"""

from __future__ import annotations

import pytest

from tests.unit.test_import_purity import loaded_after, loaded_alone

API_MODULES = ["miniseries.api.spec", "miniseries.api.policy", "miniseries.api.sweepfile", "miniseries.api.crd"]


@pytest.mark.parametrize("module", API_MODULES)
def test_the_api_loads_no_control_loop_and_no_science(module: str) -> None:
    assert (
        loaded_alone(module, API_MODULES, ["miniseries.control", "miniseries.science", "miniseries.local", "kopf"])
        == []
    )


def test_the_science_entry_loads_no_plotting_until_it_plots() -> None:
    assert loaded_after(["miniseries.science.report"], ["matplotlib"]) == []
