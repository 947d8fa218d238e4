"""Store URIs: which are valid, where a local directory's store is, and the operator's store roots.

Store URIs never hold `.` or `..` path segments (also percent-encoded): `uri_problem` says
why (and the CRD's rule, `dot_segment_rule`, refuses them at the API server already), and the operator additionally keeps every sweep inside the store roots it is configured
with (`root_problem`).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

#: The store URIs a sweep may name: s3://<bucket>[/<prefix>] or file:///<path>, no ASCII control
#: character or space anywhere. The CRD's `pattern` for spec.store.uri and spec.data.*Uri (api/crd.py
#: renders it), so it is written in what Python's `re` and Go's RE2 (the API server's) read alike:
#: explicit byte ranges, not `\s` (Unicode whitespace to Python, six ASCII bytes to Go); match it
#: with `fullmatch` (Python's `$` also matches before a final newline, Go's does not).
STORE_URI_RE = re.compile(r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\x00-\x20\x7f]*)?|file:///[^\x00-\x20\x7f]*)$")
#: The longest store URI a sweep may name (characters; S3 keys end at 1024 bytes anyway). Also the
#: CRD's `maxLength`, which bounds the cost the API server estimates for `dot_segment_rule`.
MAX_URI_LENGTH = 1024
#: What `uri_problem`'s unquote turns into a path's separators and dots; nothing else it decodes
#: can make a '.' or '..' segment.
_DOT_SEGMENT_ESCAPES = (("%2e", "."), ("%2E", "."), ("%2f", "/"), ("%2F", "/"))


def dot_segment_rule() -> str:
    """`uri_problem`'s test as a CEL expression, the CRD's x-kubernetes-validations rule on every store
    URI (true: no '.' or '..' segment). The same steps as `has_dot_segment`, which a unit test holds
    equal to `uri_problem` and an API-server test holds equal to this rule."""
    path = "self.split('#')[0].split('?')[0]"  # urlparse: the fragment, then the query, are not the path
    for escaped, plain in _DOT_SEGMENT_ESCAPES:
        path += f".replace('{escaped}', '{plain}')"
    return f"!{path}.split('/').exists(seg, seg == '.' || seg == '..')"


def has_dot_segment(uri: str) -> bool:
    """`dot_segment_rule` step by step in Python (CEL's split and replace are Go's strings.Split and
    ReplaceAll, which are Python's str.split and str.replace)."""
    path = uri.split("#")[0].split("?")[0]
    for escaped, plain in _DOT_SEGMENT_ESCAPES:
        path = path.replace(escaped, plain)
    return any(seg in (".", "..") for seg in path.split("/"))


#: The local store's directory when a command is given none (`miniseries run --local`, `miniseries report`).
DEFAULT_STORE_DIR = "miniseries-store"


def uri_problem(uri: str) -> str | None:
    """Why a store URI's path is not acceptable (a '.' or '..' segment, also percent-encoded), or None.

    Paths are never resolved: `file:///data/a/../b` would write outside `/data/a`, and an S3
    prefix with `..` means something else to every tool that treats keys as paths.
    """
    path = unquote(urlparse(uri).path)
    bad = next((seg for seg in path.split("/") if seg in (".", "..")), None)
    if bad is None:
        return None
    normal = posixpath.normpath("/" + path.lstrip("/"))
    scheme, netloc = urlparse(uri).scheme, urlparse(uri).netloc
    return (
        f"{uri!r} has a {bad!r} path segment; a store path must be written without '.' or '..' "
        f"(as {scheme}://{netloc}{normal.rstrip('/')!s} if that is what is meant)"
    )


def normalize_uri(uri: str) -> str:
    """The URI with its path normalised ('.', '..', '//' resolved, no trailing '/'); for file://
    also symbolic links, so that a link inside a root cannot lead out of it."""
    parsed = urlparse(uri)
    path = posixpath.normpath("/" + unquote(parsed.path).lstrip("/"))
    if parsed.scheme == "file":
        path = os.path.realpath(path)
    if path == "/":
        path = ""
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def parse_roots(value: str | None) -> list[str]:
    """Store roots from a comma- or whitespace-separated list (a --store-root value)."""
    return [r for r in (value or "").replace(",", " ").split() if r]


def root_problem(uri: str, roots: list[str], namespace: str | None = None) -> str | None:
    """Why `uri` lies outside every allowed root, or None (also when no roots are configured).

    A root is a store URI (`file:///srv/miniseries`, `s3://shared-bucket/teams`); `{namespace}`
    in a root stands for the sweep's namespace (`s3://shared/{namespace}` keeps each team in its
    own prefix). Containment is by whole path segments of the normalised URIs (file:// ones with
    their symbolic links resolved).
    """
    if not roots:
        return None
    problem = uri_problem(uri)
    if problem:
        return problem
    target = normalize_uri(uri)
    allowed = [normalize_uri(r.replace("{namespace}", namespace or "{namespace}")) for r in roots]
    for root in allowed:
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return None
    return f"{uri!r} is outside the store roots this operator allows: {', '.join(allowed)}"


def path_to_uri(path: str | Path) -> str:
    """A local directory (relative or absolute) as a file:// store URI."""
    return Path(path).resolve().as_uri()


def store_uri(where: str | Path | None) -> str:
    """A command's store argument as a URI: a URI as given, a local directory (default
    ./DEFAULT_STORE_DIR) as its file:// URI."""
    if where is not None and "://" in str(where):
        return str(where)
    return path_to_uri(where or DEFAULT_STORE_DIR)
