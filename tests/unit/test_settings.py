"""Issue 29: one settings object, built once by `miniseries operator` and passed in, never patched.

Two differently configured operators built in one process each keep their own settings (what they
watch, how often they poll, what they refuse), and building them assigns no global of control/ and
fills no list in place. The same two operators' reconciles against the real API server:
tests/integration/test_settings_cluster.py.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import kopf
import pytest

import miniseries.control
from miniseries.api.spec import Backend
from miniseries.cli import build_parser
from miniseries.cli.serve import settings_from_args
from miniseries.control.decide.observations import DEFAULT_RETRY
from miniseries.control.io import handlers
from miniseries.control.settings import OperatorSettings, parse_backends
from tests.harness.operator_process import sweep_doc


def settings(*flags: str, environ: dict[str, str] | None = None) -> OperatorSettings:
    """What `miniseries operator FLAGS` builds in an environment holding `environ`."""
    args = build_parser().parse_args(["operator", *flags])
    built: OperatorSettings = settings_from_args(args, environ or {})
    return built


def handler_table(registry: kopf.OperatorRegistry) -> dict[str, Any]:
    """The handlers in a registry, by id (kopf keeps them in one sub-registry per kind of handler)."""
    subs = (registry._activities, registry._changing, registry._watching, registry._spawning)
    return {h.id: h for sub in subs for h in sub.get_all_handlers()}


def body(spec_doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc = dict(spec_doc)
    doc["metadata"] = {**doc["metadata"], "namespace": namespace, "uid": "u-1", "generation": 1}
    return doc


A_FLAGS = ("--store-root=file:///stores/a/{namespace}", "--backend=pytorchjob", "--namespace=team-a")
B_FLAGS = ("--store-root=file:///stores/b/{namespace}", "--backend=pytorchjob", "--backend=trainjob",
           "--allow-any-image", "--namespace=team-b")  # fmt: skip


def test_two_operators_in_one_process_each_decide_by_their_own_settings() -> None:
    a = settings(*A_FLAGS, environ={"MINISERIES_POLL_SECONDS": "1"})
    b = settings(*B_FLAGS, environ={"MINISERIES_POLL_SECONDS": "7"})
    reg_a, reg_b = kopf.OperatorRegistry(), kopf.OperatorRegistry()
    op_a, op_b = handlers.register(a, reg_a), handlers.register(b, reg_b)
    table_a, table_b = handler_table(reg_a), handler_table(reg_b)

    # each registry holds its own operator's bound handlers, under the ids they had as functions
    assert table_a["on_create"].fn == op_a.on_create and table_b["on_create"].fn == op_b.on_create
    assert {
        "configure",
        "sweeps",
        "on_create",
        "on_resume",
        "on_update/spec",
        "poll_store",
        "on_delete",
        "login_via_client",
    } <= set(table_a)
    # what they watch and how often they poll
    assert (table_a["poll_store"].interval, table_b["poll_store"].interval) == (1.0, 7.0)
    assert "on_trainjobs_event" not in table_a and "on_pytorchjobs_event" in table_a
    assert {"on_pytorchjobs_event", "on_trainjobs_event"} <= set(table_b)

    # what they refuse: B's backend, an image only B allows, a store under B's root (and A's)
    ns = "team-b"
    store_a, store_b = "file:///stores/a/team-b/s", "file:///stores/b/team-b/s"
    cases = [
        (sweep_doc("s", store_b, backend="trainjob"), ("AdmissionDenied", "spec.resources.backend"), None),
        (sweep_doc("s", store_b, image="example.org/mine:1"), ("AdmissionDenied", "spec.resources.image"), None),
        (sweep_doc("s", store_b), ("StoreNotAllowed", "spec.store.uri"), None),
        (sweep_doc("s", store_a), None, ("StoreNotAllowed", "spec.store.uri")),
    ]
    for doc, by_a, by_b in cases:
        for op, want in ((op_a, by_a), (op_b, by_b)):
            got = op.check(body(doc, ns))
            if want is None:
                assert not isinstance(got, handlers.Refusal), got.error.problems
                sweep, plan = got
                assert sweep.metadata["name"] == "s" and [r.name for r in plan.runs]
            else:
                assert isinstance(got, handlers.Refusal)
                assert (got.reason, [p.field for p in got.error.problems]) == (want[0], [want[1]])


def _control_globals() -> dict[str, dict[str, Any]]:
    """Every global of every module under miniseries.control: the object, and a copy of a container's
    content (a list filled in place keeps its identity)."""
    names = [info.name for info in pkgutil.walk_packages(miniseries.control.__path__, "miniseries.control.")]
    modules = [importlib.import_module(name) for name in names]  # all first: a package gains its submodules
    out: dict[str, dict[str, Any]] = {}
    for module in modules:
        out[module.__name__] = {
            k: (v, list(v) if isinstance(v, list | set) else dict(v) if isinstance(v, dict) else None)
            for k, v in vars(module).items()
            if not k.startswith("__")
        }
    return out


def test_building_operators_assigns_nothing_in_control_and_registers_nothing_globally() -> None:
    before = _control_globals()
    default = handler_table(kopf.get_default_registry())
    for flags in (A_FLAGS, B_FLAGS):
        handlers.register(settings(*flags), kopf.OperatorRegistry())
    after = _control_globals()
    assert after.keys() == before.keys()
    for name, names in before.items():
        assert after[name].keys() == names.keys(), f"{name}: globals added or removed"
        for key, (value, content) in names.items():
            now, now_content = after[name][key]
            assert now is value, f"{name}.{key} was assigned"
            assert now_content == content, f"{name}.{key} was changed in place"
    # nothing is registered at import or by `register` into kopf's default registry
    assert handler_table(kopf.get_default_registry()).keys() == default.keys()
    assert not any(h.id in ("on_create", "poll_store") for h in default.values())


def test_settings_come_from_flags_and_the_environment_the_harness_sets() -> None:
    env = {
        "MINISERIES_POLL_SECONDS": "0.5",
        "MINISERIES_RETRY_BASE_SECONDS": "1",
        "MINISERIES_STORE_DENIED_RETRY_SECONDS": "2",
        "MINISERIES_STORE_RETRY_SECONDS": "3",
        "MINISERIES_BACKENDS": "trainjob,pytorchjob,",
        "POD_NAMESPACE": "ops",
    }
    s = settings("--store-root=file:///x/{namespace}", "--kubeconfig=/k", environ=env)
    assert (s.poll_seconds, s.retry.base_seconds, s.retry.store_denied_seconds, s.store_retry_seconds) == (
        0.5, 1.0, 2.0, 3.0)  # fmt: skip
    assert s.retry.cap_seconds == DEFAULT_RETRY.cap_seconds
    assert s.backends == (Backend.trainjob, Backend.pytorchjob) and s.namespaces == ("ops",)
    assert s.store_roots == ("file:///x/{namespace}",) and s.kubeconfig == "/k"
    # flags win over $MINISERIES_BACKENDS; none of either: the chart's default
    assert settings("--backend=pytorchjob", environ=env).backends == (Backend.pytorchjob,)
    bare = settings("--all-namespaces")
    assert bare == OperatorSettings(all_namespaces=True, policy=bare.policy)
    assert bare.backends == (Backend.pytorchjob,) and bare.poll_seconds == 10.0 and bare.retry == DEFAULT_RETRY


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MINISERIES_POLL_SECONDS": "0"}, "$MINISERIES_POLL_SECONDS: '0' is not a number of seconds > 0"),
        ({"MINISERIES_RETRY_BASE_SECONDS": "soon"}, "$MINISERIES_RETRY_BASE_SECONDS: 'soon'"),
        ({"MINISERIES_BACKENDS": "mpijob"}, "$MINISERIES_BACKENDS: 'mpijob' is not a backend; allowed: pytorchjob"),
    ],
)
def test_a_bad_setting_names_the_variable_its_value_and_what_is_allowed(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("$", r"\$")):
        settings(environ=environ)
    with pytest.raises(ValueError, match="allowed: pytorchjob, trainjob"):
        parse_backends([])
