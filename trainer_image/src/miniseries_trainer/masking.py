"""The credentials the trainer was given never leave it in what it prints (issue 28 item 3).

A failed container's last log lines are copied by the kubelet into the pod's status
(FallbackToLogsOnError), and from there by the operator into the sweep's status and Events, which
far more people can read than the Secret. So every entry point (train, tokenizer, core_eval) calls
`install()` first: sys.stdout and sys.stderr are wrapped so that each write has the values of the
credential env (miniseries.contract.redact.secret_values) replaced by ***, and credential-shaped
text (redact) with them; log records are masked when they are made, whatever handler prints them.
A traceback that shows a local holding the secret key is masked the same way.

What this cannot see: bytes written to fd 1/2 below Python (a C library's own messages); the
operator's redaction of every log tail it copies is the second line for those.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from miniseries.contract.redact import mask_values, redact, secret_values


class MaskingStream(io.TextIOBase):
    """A text stream that masks each write before passing it on to `inner`."""

    def __init__(self, inner: TextIO, values: list[str]) -> None:
        self.inner = inner
        self.values = values

    def mask(self, text: str) -> str:
        return redact(mask_values(text, self.values))

    def write(self, s: str) -> int:
        self.inner.write(self.mask(s))
        return len(s)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # what a library reaches for beyond writing text (errors, line_buffering, reconfigure, ...);
        # `buffer` too: bytes written there are not masked (the operator's redaction still applies)
        return getattr(self.inner, name)


def install(env: Mapping[str, str] | None = None) -> list[str]:
    """Mask this process's output from here on; returns the values it masks (for tests). Idempotent."""
    values = secret_values(env)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, MaskingStream):
            stream.values = values
        else:
            setattr(sys, name, MaskingStream(stream, values))
    _mask_log_records(values)
    return values


_installed_factory: list[Any] = []


def _mask_log_records(values: list[str]) -> None:
    """Every LogRecord made from now on carries its message already masked (handlers made before
    install() write to the unwrapped streams, so masking at the stream alone would miss them)."""
    if _installed_factory:
        _installed_factory[0] = values
        return
    _installed_factory.append(values)
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        text = redact(mask_values(record.getMessage(), _installed_factory[0]))
        record.msg, record.args = text, None
        return record

    logging.setLogRecordFactory(factory)
