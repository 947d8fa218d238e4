"""The accepted spec, kept next to the runs it planned: `<ns>/<sweep>/spec.json` in the store.

The operator and the local runner write it; the report reads it. It lives with the
control plane so that the control loop does not import the science to persist a spec.
"""

from __future__ import annotations

import json

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store


def save_spec(store: Store, layout: SweepLayout, spec: ScalingSweepSpec) -> None:
    """The spec the runs were planned from, next to them (the local runner and the operator write it)."""
    store.write_bytes(layout.spec, json.dumps(spec.wire(), indent=2).encode())


def load_spec(store: Store, layout: SweepLayout) -> ScalingSweepSpec | None:
    if not store.exists(layout.spec):
        return None
    return ScalingSweepSpec.model_validate(json.loads(store.read_bytes(layout.spec)))
