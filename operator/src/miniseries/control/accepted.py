"""Re-export: the accepted spec's persistence lives with the API (`miniseries.api.sweepfile`).

Kept so that `from miniseries.control.accepted import load_spec, save_spec` keeps working until
its importers (control.handlers, local.runner) import from `miniseries.api.sweepfile`.
"""

from miniseries.api.sweepfile import load_spec, save_spec

__all__ = ["load_spec", "save_spec"]
