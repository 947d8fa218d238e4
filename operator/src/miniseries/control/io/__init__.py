"""The operator's I/O around its pure decisions: the kopf handlers, reading the cluster and the
store into observations (`observe`, `store_reads`), and acting on a decision (`act`, `events`,
`metrics`). The decisions themselves live in `control/decide/`.
"""
