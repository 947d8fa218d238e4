"""Riding out store outages: a Store wrapper that retries transient errors with backoff (the trainer's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from miniseries.contract.store.base import Store, StoreError, StorePermanentError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient store errors, for at most `budget_seconds` per operation."""

    budget_seconds: float = 300.0
    first_delay: float = 1.0
    max_delay: float = 5.0  # the most a recovered store goes unnoticed

    def delay(self, attempt: int, waited: float) -> float | None:
        """Seconds to wait before retry `attempt` (1-based), or None when the budget is spent."""
        left = self.budget_seconds - waited
        if left <= 0:
            return None
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay, left)


@dataclass
class StoreHealth:
    """What a RetryingStore saw: for metrics (and the trainer's log)."""

    errors: int = 0  # failed store operations, each try counted
    waited_seconds: float = 0.0  # time spent waiting to retry
    outage_started: float | None = None  # monotonic time of the first error of the current outage
    longest_outage_seconds: float = 0.0
    skipped_advisory: int = 0  # advisory writes dropped (progress.json)

    def outage_seconds(self, now: float) -> float:
        return now - self.outage_started if self.outage_started is not None else 0.0


@dataclass
class RetryingStore:
    """A store whose operations retry transient errors (not StorePermanentError) with backoff.

    Writes stay atomic (a retried write rewrites the whole object). `write_advisory` tries
    once and reports success: for files that are rewritten anyway (progress.json), where
    waiting would only stall training. `on_change` is called (from whichever thread hit
    the store) after each error and on recovery, so metrics show an outage while it lasts.
    """

    inner: Store
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_change: Callable[[StoreHealth], None] | None = None
    log: Callable[[str], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    health: StoreHealth = field(default_factory=StoreHealth)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.health)

    def _failed(self, what: str, err: StoreError) -> None:
        with self._lock:
            self.health.errors += 1
            if self.health.outage_started is None:
                self.health.outage_started = self.clock()
        self._notify()

    def _succeeded(self) -> None:
        if self.health.outage_started is None:
            return
        with self._lock:
            if self.health.outage_started is None:
                return
            lasted = self.clock() - self.health.outage_started
            self.health.longest_outage_seconds = max(self.health.longest_outage_seconds, lasted)
            self.health.outage_started = None
        if self.log:
            self.log(f"store {self.uri} answers again after {lasted:.1f} s")
        self._notify()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        start = self.clock()
        attempt = 0
        while True:
            try:
                out = fn()
            except StorePermanentError:
                self._succeeded()  # the store answered
                raise
            except StoreError as e:
                attempt += 1
                self._failed(what, e)
                waited = self.clock() - start
                delay = self.policy.delay(attempt, waited)
                if delay is None:
                    raise StoreError(
                        f"{e} (gave up on {what} after {waited:.0f} s of retries; the limit is "
                        f"{self.policy.budget_seconds:g} s)"
                    ) from e
                if self.log and attempt == 1:
                    self.log(f"store error on {what}, retrying for up to {self.policy.budget_seconds:g} s: {e}")
                self.sleep(delay)
                with self._lock:
                    self.health.waited_seconds += delay
                self._notify()
                continue
            self._succeeded()
            return out

    def write_advisory(self, key: str, data: bytes) -> bool:
        """One try, no retry: False (counted) when the store did not take it."""
        try:
            self.inner.write_bytes(key, data)
        except StoreError as e:
            self._failed(f"write {key}", e)
            with self._lock:
                self.health.skipped_advisory += 1
            self._notify()
            return False
        self._succeeded()
        return True

    def read_bytes(self, key: str) -> bytes:
        return self._call(f"read {key}", lambda: self.inner.read_bytes(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(f"write {key}", lambda: self.inner.write_bytes(key, data))

    def exists(self, key: str) -> bool:
        return self._call(f"stat {key}", lambda: self.inner.exists(key))

    def list(self, prefix: str = "") -> list[str]:
        return self._call(f"list {prefix}", lambda: self.inner.list(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self._call(f"delete {prefix}", lambda: self.inner.delete_prefix(prefix))

    def delete_keys(self, keys: list[str]) -> int:
        return self._call(f"delete {len(keys)} objects", lambda: self.inner.delete_keys(keys))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        return self._call(f"create {key}", lambda: self.inner.create_exclusive(key, data))

    def copy(self, src: str, dst: str) -> None:
        self._call(f"copy {src}", lambda: self.inner.copy(src, dst))

    def outer(self) -> tuple[Store, str]:
        return self.inner.outer()

    def upload_file(self, key: str, path: Path) -> None:
        self._call(f"upload {key}", lambda: self.inner.upload_file(key, path))

    def download_file(self, key: str, path: Path) -> None:
        self._call(f"download {key}", lambda: self.inner.download_file(key, path))

    def check(self) -> None:
        self._call("check", self.inner.check)
