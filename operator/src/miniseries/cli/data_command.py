"""`miniseries data prepare` (text -> parquet shards) and `miniseries data fetch` (the real data). No torch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from miniseries.contract.store import StoreError


def cmd_prepare(args: argparse.Namespace) -> int:
    from miniseries.data.prepare import prepare

    try:
        shards = prepare(
            args.out,
            source=args.source,
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


def cmd_fetch(args: argparse.Namespace) -> int:
    from miniseries.data import fetch as df

    if not args.eval_bundle and args.shards is None:
        print("error: say what to fetch: --eval-bundle, --shards N, or both", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def show(what: str, got: df.Downloaded) -> None:
        print(f"{what}\t{got.sha256}\t{got.bytes:,} bytes\t{got.how}\t{got.path}", flush=True)

    cache = Path(args.cache).expanduser() if args.cache else None
    kw = {"retries": args.retries, "say": say}
    try:
        sums = df.read_sums(Path(args.checksums).read_text()) if args.checksums else {}
        if args.eval_bundle:
            bundle, got = df.fetch_eval_bundle(url=args.eval_bundle_url, cache=cache, sums=sums, **kw)
            show("eval_bundle.zip", got)
            print(f"eval bundle: {bundle}")
            if args.out:
                uri = args.out.rstrip("/") + "/eval_bundle/"
                df.copy_to_store(uri, df.bundle_files(bundle))
                print(f"eval bundle -> {uri}")
        if args.shards is not None:
            dataset = df.DATASETS[args.dataset]
            base = args.base_url or os.environ.get("MINISERIES_DATA_BASE_URL") or dataset.base_url
            say(f"{dataset.name}: {args.shards} training shard(s) + the validation shard from {base}")
            files = {}
            for got in df.fetch_shards(dataset, args.shards, base_url=args.base_url, cache=cache, sums=sums, **kw):
                show(got.path.name, got)
                files[got.path.name] = got.path
            print(f"shards: {df.dataset_dir(dataset.name, cache)}")
            if args.out:
                uri = args.out.rstrip("/") + f"/data/{dataset.name}/"
                df.copy_to_store(uri, files)
                print(f"shards -> {uri}")
    except (df.FetchError, StoreError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from miniseries.data.fetch import DATASETS, DEFAULT_DATASET, EVAL_BUNDLE_URL

    data = subparsers.add_parser("data", help="training and evaluation data: prepare shards, fetch the real data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "prepare",
        help="turn English text (the standard library's prose, text files, parquet shards) into training shards",
        description="Write parquet shards with a `text` column (nanochat's format), the last ones held out for "
        "validation. --source: `stdlib` (default: the running Python's own docstrings, comments and pydoc topics, "
        "~2.7 MB, PSF license), a directory, or a file:// or s3:// prefix of UTF-8 text files (one document each) "
        "and parquet files with a `text` column (one document per row).",
    )
    p.add_argument("--out", required=True, help="store URI for the shards (file:///path or s3://bucket/prefix)")
    p.add_argument("--source", default="stdlib", help="stdlib (default), DIR, file:///DIR or s3://bucket/prefix")
    p.add_argument(
        "--glob",
        default=None,
        help="files to read below --source, `*` matching `/` too (default **/*.parquet when there are parquet "
        "files, else **/*)",
    )
    p.add_argument(
        "--shard-chars",
        type=int,
        default=None,
        help="characters per shard (default 400,000 for stdlib, 2,000,000 for text files, 100,000,000 for parquet)",
    )
    p.add_argument(
        "--val-shards", type=int, default=1, help="shards held out for validation, the last ones (default 1)"
    )
    p.set_defaults(func=cmd_prepare)

    f = sub.add_parser(
        "fetch",
        help="download the CORE eval bundle and pretraining shards into the cache (resumable, sha256-checked)",
        description="Download nanochat's data into $MINISERIES_CACHE (default ~/.cache/miniseries): "
        "--eval-bundle unpacks DCLM's CORE bundle into <cache>/eval_bundle (then `miniseries run --local` "
        "evaluates CORE), --shards N fetches the first N training shards and the validation shard into "
        "<cache>/data/<dataset>/. Interrupted downloads resume; sha256 sums are recorded in SHA256SUMS and checked.",
    )
    f.add_argument("--eval-bundle", action="store_true", help="the DCLM CORE eval bundle (nanochat's eval_bundle.zip)")
    f.add_argument("--shards", type=int, default=None, metavar="N", help="the first N training shards + the val shard")
    f.add_argument("--dataset", choices=sorted(DATASETS), default=DEFAULT_DATASET,
                   help=f"which shards (default {DEFAULT_DATASET}, as nanochat today)")  # fmt: skip
    f.add_argument("--out", default=None, help="also copy into this store URI (<out>/eval_bundle/, <out>/data/NAME/)")
    f.add_argument("--cache", default=None, help="cache directory (default $MINISERIES_CACHE or ~/.cache/miniseries)")
    f.add_argument("--eval-bundle-url", default=None,
                   help=f"default $MINISERIES_EVAL_BUNDLE_URL or {EVAL_BUNDLE_URL}")  # fmt: skip
    f.add_argument("--base-url", default=None,
                   help="where the shards are, default $MINISERIES_DATA_BASE_URL or the dataset's own")  # fmt: skip
    f.add_argument("--checksums", default=None, metavar="FILE",
                   help="sha256sum-format file pinning the files' sha256 (a mismatch is refused)")  # fmt: skip
    f.add_argument("--retries", type=int, default=5, help="retries of a dropped connection, each resuming (default 5)")
    f.set_defaults(func=cmd_fetch)
