"""`miniseries store migrate`: move a sweep's data from the layout before namespaces.

    miniseries store migrate --store URI --namespace NS --sweep NAME --uid UID

Until store keys carried a namespace, a sweep wrote under `<store>/<sweep>/`; now it writes
under `<store>/<namespace>/<sweep>/`, claimed by its store manifest (layout.py). The operator
refuses to guess which namespace's sweep old data belongs to (two teams may both have a
sweep of that name); this command is that decision: it claims the new key for the sweep with
that uid (`kubectl get scalingsweep NAME -n NS -o jsonpath={.metadata.uid}`, which the
operator's StoreLayoutOutdated message already names) and moves the objects.
"""

from __future__ import annotations

import argparse
import sys

from miniseries.contract.layout import (
    LOCAL_NAMESPACE,
    ClaimRefused,
    SweepIdentity,
    SweepLayout,
    local_identity,
    migrate_legacy,
)


def cmd_migrate(args: argparse.Namespace) -> int:
    from miniseries.api.sweepfile import load_spec
    from miniseries.contract.store import StoreError, open_store, store_uri
    from miniseries.plan.planner import make_plan

    uri = store_uri(args.store)
    try:
        layout = SweepLayout(args.namespace, args.sweep)
        store = open_store(uri)
        spec = load_spec(store, layout, layout.legacy_spec)
        if spec is None:
            print(f"error: {uri}/{layout.legacy_spec} does not exist: nothing of {args.sweep!r} in the old layout",
                  file=sys.stderr)  # fmt: skip
            return 2
        runs = [r.name for r in make_plan(spec).runs]
        if args.namespace == LOCAL_NAMESPACE and not args.uid:
            owner = local_identity(args.sweep)
        elif args.uid:
            owner = SweepIdentity(namespace=args.namespace, name=args.sweep, uid=args.uid)
        else:
            print("error: --uid is required for a cluster sweep (kubectl get scalingsweep NAME -n NS "
                  "-o jsonpath={.metadata.uid})", file=sys.stderr)  # fmt: skip
            return 2
        moved = migrate_legacy(store, layout, owner, runs)
    except ClaimRefused as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"moved {moved} objects from {uri}/{layout.legacy_root} to {uri}/{layout.root}, owned by {owner.describe()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("store", help="store maintenance (migrate a sweep's data to the namespaced layout)")
    ssub = p.add_subparsers(dest="store_cmd", required=True, metavar="COMMAND")
    m = ssub.add_parser("migrate", help="move <store>/<sweep>/ to <store>/<namespace>/<sweep>/, claimed for a sweep")
    m.add_argument("--store", required=True, help="store URI or local directory")
    m.add_argument("--namespace", required=True, help=f"the sweep's namespace ({LOCAL_NAMESPACE} for local runs)")
    m.add_argument("--sweep", required=True, help="the sweep's name")
    m.add_argument("--uid", help="the sweep's metadata.uid (not needed for --namespace local)")
    m.set_defaults(func=cmd_migrate)
