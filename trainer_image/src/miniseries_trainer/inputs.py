"""The run's inputs, all checked before any compute is spent: the store, the data shards, the
tokenizer, and the CORE eval bundle (a bad bundle must not surface after hours of training)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from miniseries.contract.core import CoreError
from miniseries.contract.store import (
    RetryingStore,
    RetryPolicy,
    StoreAccessDenied,
    StoreError,
    StoreHealth,
    open_store,
)
from miniseries_trainer.flags import STARTUP_STORE_SECONDS, denied, fail
from miniseries_trainer.shards import list_shards
from miniseries_trainer.tokenizer import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from miniseries_trainer.core_bundle import Bundle


@dataclass
class Inputs:
    store: RetryingStore  # where the run writes (checkpoints, progress, loss curve, results)
    data_store: RetryingStore  # the parquet shards
    health: StoreHealth  # shared by both stores: one outage, one set of metrics
    train_keys: list[str]
    val_key: str
    tokenizer: Tokenizer
    bundle: Bundle | None  # None when CORE is not evaluated (no --eval-bundle)


def open_inputs(args: argparse.Namespace, rank: int) -> Inputs:
    health = StoreHealth()
    policy = RetryPolicy(budget_seconds=float(args.store_outage_seconds))

    def store_log(msg: str) -> None:
        print(f"rank {rank}: {msg}", file=sys.stderr, flush=True)

    try:
        raw_store = open_store(args.store)
        # A store that does not answer at the start is most likely a wrong URI, endpoint or
        # credentials: fail fast (STARTUP_STORE_SECONDS) before compute is spent; once it has
        # answered, an outage is ridden out for --store-outage-seconds.
        RetryingStore(raw_store, RetryPolicy(budget_seconds=min(STARTUP_STORE_SECONDS, policy.budget_seconds))).check()
        store = RetryingStore(raw_store, policy, log=store_log, health=health)
        data_store = RetryingStore(open_store(args.data), policy, log=store_log, health=health)
        train_keys, val_key = list_shards(data_store)
        tokenizer = load_tokenizer(args.tokenizer)
        bundle = None
        if args.eval_bundle:
            from miniseries_trainer.core_eval import load_bundle

            bundle = load_bundle(
                args.eval_bundle, allow_partial=args.core_allow_partial, max_per_task=args.core_max_per_task
            )
    except StoreAccessDenied as e:
        denied(str(e))
    except (StoreError, ValueError) as e:
        fail(f"--eval-bundle: {e}" if isinstance(e, CoreError) else str(e))
    if tokenizer.vocab_size > args.vocab_size:
        fail(f"--vocab-size {args.vocab_size} is smaller than the tokenizer's vocabulary ({tokenizer.vocab_size})")
    return Inputs(store, data_store, health, train_keys, val_key, tokenizer, bundle)
