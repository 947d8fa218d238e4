"""The operator's pure decisions: observations in, the whole status and the actions out.

No I/O and no cluster client: nothing here imports kopf or kubernetes or reads a store
(tests/unit/test_import_purity.py proves it in a clean interpreter). The I/O around these
decisions lives in `control/io/`; what a backend's job looks like, in `control/backends/`.
"""
