"""The plan room, pure: a sweep's spec in, its runs out (shapes, tokens, steps, WSD trunks and branches,
GPU packing, cost, the trainer's argv).

Used by `control/`, `science/`, `local/` and `cli/`, and imports none of them: only `api/` (the spec's
types) and `contract/` (shapes, the store's path layout). No I/O: nothing here reads a cluster or a store.
"""
