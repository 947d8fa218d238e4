"""The operator's Kubernetes API clients: one ApiClient, so one connection pool, per process.

`client.CustomObjectsApi()` without an ApiClient builds a new one, with a new connection pool,
every call: every API request of a reconcile then paid a TLS handshake (two thirds of a
reconcile's time on a quiet poll, and as much again in the API server). urllib3's pool is
thread-safe, and the configuration's token-refresh hook (in-cluster) runs on every request,
so one shared client serves every handler thread for the life of the process.
"""

from __future__ import annotations

import threading

from kubernetes import client

_client: client.ApiClient | None = None
_guard = threading.Lock()


def api_client() -> client.ApiClient:
    global _client
    with _guard:
        if _client is None:
            _client = client.ApiClient()
        return _client


def reset() -> None:
    """Forget the shared client: the next call builds one from the configuration loaded since."""
    global _client
    with _guard:
        _client = None


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def batch() -> client.BatchV1Api:
    return client.BatchV1Api(api_client())
