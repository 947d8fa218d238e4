"""A stand-in for `python -m miniseries_trainer.tokenizer`: writes a tokenizer and its manifest."""

from __future__ import annotations

import argparse
import sys

from miniseries.contract.store import open_store


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--max-chars", type=int)
    a = p.parse_args()
    root, _, prefix = a.out.rstrip("/").rpartition("/")
    # output is <store uri>/<sweep>/tokenizer/: write under the store root
    uri, sweep = root.rsplit("/", 1)
    store = open_store(uri)
    store.write_bytes(f"{sweep}/{prefix}/tokenizer.json", b"{}")
    store.write_bytes(f"{sweep}/{prefix}/manifest.json", b'{"vocab_size": %d}' % a.vocab_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
