"""`miniseries data prepare`: build the training corpus shards (no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from miniseries.store import StoreError


def cmd_prepare(args: argparse.Namespace) -> int:
    from miniseries.data_prepare import prepare

    try:
        shards = prepare(
            args.out,
            source=Path(args.source),
            pattern=args.glob,
            shard_chars=args.shard_chars,
            val_shards=args.val_shards,
        )
    except (ValueError, FileNotFoundError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for s in shards:
        print(f"{s.key}\t{s.split}\t{s.documents} docs\t{s.chars:,} chars")
    print(f"{len(shards)} shards -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from miniseries.data_prepare import DEFAULT_GLOB, DEFAULT_SOURCE

    data = subparsers.add_parser("data", help="training data: prepare parquet shards")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser("prepare", help="turn an installed English text corpus into parquet shards with a `text` column")
    p.add_argument("--out", required=True, help="store URI for the shards (file:///path or s3://bucket/prefix)")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help=f"directory of text files (default {DEFAULT_SOURCE})")
    p.add_argument("--glob", default=DEFAULT_GLOB, help=f"files to read below --source (default {DEFAULT_GLOB})")
    p.add_argument("--shard-chars", type=int, default=2_000_000, help="characters per shard (default 2,000,000)")
    p.add_argument(
        "--val-shards", type=int, default=1, help="shards held out for validation, the last ones (default 1)"
    )
    p.set_defaults(func=cmd_prepare)
