"""Credentials out of text that many people read: log tails, status messages, Events.

Two layers, because neither alone is enough:

- `mask_values`: the trainer knows the exact secrets it was given (its credential env), and masks
  those values wherever they appear in what it prints (miniseries_trainer.masking), whatever shape
  they have (a MinIO password is no AKIA... key).
- `redact`: the operator does not see the Secret's values (it reads metadata only), so it removes
  what looks like a credential from every log tail it copies into status, Events and its own log:
  AWS access key ids, `secret=`/`token=`/`password=`-style assignments (also as JSON or YAML keys),
  `Authorization: Bearer/Basic ...`, and the password in a URL's user info. A tail the trainer
  already masked passes through unchanged; a process that bypassed the trainer's masking (a C
  library writing to fd 2, a shell in a custom image) is still caught where its shape is known.

Torch-free and dependency-free: both the trainer and the control plane import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"

#: Words in a variable or key name that make its value a secret.
#: Not "tokens" nor "tokenizer": this project's logs are full of target_tokens=... and tokenizer: ...
_SECRET_WORDS = (
    r"(?:secret|token(?!s|iz)|password|passwd|passphrase|credential|api[_-]?key|access[_-]?key|private[_-]?key)"
)
# NAME<sep>VALUE, where NAME contains a secret word, sep is =, : or := with optional quotes around
# either side (env dumps, JSON, YAML, CLI flags --secret-key=...); the name is kept, the value masked.
_ASSIGNMENT = re.compile(
    rf"(?i)(?P<name>[\w.-]*{_SECRET_WORDS}[\w.-]*)(?P<sep>[\"']?\s*(?::=|=|:)\s*[\"']?)(?P<value>[^\s\"',;&}}\]]+)"
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b")
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]+):(?P<password>[^\s/@]+)@")

#: The env a trainer masks the values of: the store's credentials, and any variable whose name says
#: it holds a secret (a tenant's own Secret through env, e.g. a WANDB_API_KEY).
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORDS}")
KNOWN_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
#: Shorter values are not masked: "1" or "yes" would blank out half of every log, and a secret that
#: short is no secret.
MIN_SECRET_CHARS = 6


def redact(text: str) -> str:
    """`text` with every credential-shaped substring replaced by MASK."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)
    text = _ASSIGNMENT.sub(lambda m: m[0] if m["value"] == MASK else f"{m['name']}{m['sep']}{MASK}", text)
    return _AWS_KEY_ID.sub(MASK, text)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values in `env` (default os.environ) that are secrets, longest first (so that a secret
    containing another is masked whole)."""
    env = os.environ if env is None else env
    values = {
        v
        for k, v in env.items()
        if (k in KNOWN_SECRET_ENV or _SECRET_NAME.search(k)) and len(v.strip()) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def mask_values(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each value replaced by MASK."""
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text
