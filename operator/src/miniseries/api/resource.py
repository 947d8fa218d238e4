"""The ScalingSweep resource's names on the API server: group, version, kind, plural."""

from __future__ import annotations

GROUP = "miniseries.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalingSweep"
PLURAL = "scalingsweeps"
SINGULAR = "scalingsweep"
SHORT_NAMES = ["sweep", "sweeps"]
