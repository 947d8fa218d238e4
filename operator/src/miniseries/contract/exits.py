"""The trainer's exit codes: what each says to the operator and the local runner (the trainer contract).

    0                   done: results.json is written
    2                   a flag or an input the user must fix (argparse's own code; the message names it)
    EXIT_PREEMPTED 75   stopped by SIGTERM/SIGINT after writing a checkpoint (contract.preemption)
    EXIT_STORE_DENIED 77  the store refused this run's credentials (403, AccessDenied, a file:// permission):
                        not a training failure: no retry is spent, the run waits for the credentials to change
    EXIT_FENCED 78      its sweep was deleted or re-created while it ran: it wrote nothing more (layout.fenced)

Anything else is a failure: retried from the newest checkpoint up to the sweep's retryLimit.
77 and 78 follow sysexits.h (EX_NOPERM, EX_CONFIG) so that a generic supervisor reads them as
"permission" and "configuration", not as a crash.
"""

from __future__ import annotations

from miniseries.contract.preemption import EXIT_PREEMPTED

EXIT_STORE_DENIED = 77
EXIT_FENCED = 78
#: The trainer's last line when the store refused it: the operator finds it in the log tail the kubelet
#: keeps, where torchrun (several ranks in a pod) turns every exit code into 1.
STORE_DENIED_MARKER = "miniseries: store access denied:"

__all__ = ["EXIT_FENCED", "EXIT_PREEMPTED", "EXIT_STORE_DENIED", "STORE_DENIED_MARKER"]
