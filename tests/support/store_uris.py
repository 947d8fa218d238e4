"""Store URIs and whether the operator accepts them: the table both the CRD's rules (in Python,
tests/unit/test_crd_validation.py) and the real API server (tests/integration/test_crd_api_server.py)
must answer alike."""

from __future__ import annotations

from miniseries.contract.store.uri import MAX_URI_LENGTH

# (uri, the operator accepts it)
URIS: list[tuple[str, bool]] = [
    ("file:///data/store", True),
    ("file:///", True),
    ("s3://bucket", True),
    ("s3://bucket/", True),
    ("s3://my.bucket-1/team/a", True),
    ("file:///a/.../b", True),  # three dots are a name
    ("file:///a/..b/c.", True),
    ("file:///a/%2e%2e%2e", True),
    ("file:///a/%252e%252e/b", True),  # decoded once: '%2e%2e', a name
    ("file:///a/b?x=/../", True),  # the query is not the path
    ("file:///a/b#/../", True),  # nor the fragment
    ("file:///données/ü", True),  # any non-ASCII character
    ("file:///a/../b", False),
    ("file:///a/./b", False),
    ("file:///a/..", False),
    ("file:///..", False),
    ("s3://bucket/..", False),
    ("s3://bucket/a/./", False),
    ("file:///a/%2e%2e/b", False),
    ("file:///a/%2E./b", False),
    ("file:///a/.%2e", False),
    ("file:///a%2f..%2fb", False),  # an encoded '/' separates too
    ("file:///a/%2e/b?x", False),
    ("s3://", False),  # no bucket
    ("s3:///prefix", False),  # an empty bucket
    ("s3://ab/x", False),  # a bucket of 2 characters
    ("s3://Bucket/x", False),
    ("s3://-bucket/x", False),
    ("s3://bucket?x", False),
    ("file://host/x", False),
    ("file:/x", False),
    ("/data/store", False),
    ("http://bucket/x", False),
    ("", False),
    ("file:///a b", False),
    ("file:///a\tb", False),
    ("file:///a\n", False),  # Python's `$` alone would take it
    ("file:///a\x00", False),
    ("file:///a\x7f", False),
    ("file:///" + "a" * (MAX_URI_LENGTH - 8), True),
    ("file:///" + "a" * (MAX_URI_LENGTH - 7), False),
    ("file:///" + "a/" * ((MAX_URI_LENGTH - 8) // 2), True),  # the most segments the rule walks
    ("file:///" + "a/" * ((MAX_URI_LENGTH - 11) // 2) + "..", False),
    ("file:///" + "%2e/" * ((MAX_URI_LENGTH - 8) // 4), False),  # the most replacements
]
