"""The test harness: the real components the tests start, one module for each thing started.

- binaries: where the Go-built binaries are (``~/.cache/miniseries/bin``), ``MissingBinary``
- builds: a lookup waiting for `make test`'s background builds (``built``), ``BuildFailed``
- durations: the plugin timing each test and group (the phase table, scripts/ci_phases.py)
- processes: ``Stack`` (start in order, stop in reverse, logs per process), ``wait_for``, ``free_port``
- ports: in parallel mode, each test process's own slot of loopback ports (``free_port`` takes from it)
- parallel: the plugin splitting a run into the part beside other workers and the part alone (``MINISERIES_PARALLEL``)
- certs: a CA and serving certificates (API server, training-operator webhook)
- cluster: the throwaway Kubernetes control plane, a kwok GPU node, the PyTorchJob CRD;
  ``python -m tests.harness.cluster up|down`` for a person
- s3: versitygw serving a directory, and buckets on it
- prometheus, promql: a real Prometheus scraping what a test names, and queries as Grafana sends them
- helm: the real helm binary against the chart
- operator_process: ``miniseries operator`` as a process, and the JobDriver that plays the
  training-operator's part on the plain cluster
- training_operator: the real path for e2e, the Kubeflow training-operator and its webhook over TLS
  on the cluster's control plane, plus the node agent
- trainer: the Trainer v2 backend's path, JobSet and the Kubeflow trainer with their webhooks over
  TLS on the same control plane, plus the node agent (marker ``trainjob``)
- webhooks: a project's published webhook configurations (and kustomize JSON patches) served by URL
  with the harness's CA (Kueue, JobSet, the trainer)
- node_agent: a node that runs pods as local processes (``python -m tests.harness.node_agent``)
- node: a real kubelet + containerd + runc node (``python -m tests.harness.node``)
- crds/: the vendored PyTorchJob CRD, JobSet's and Trainer v2's CRDs and webhook configurations,
  and the Prometheus Operator's kinds, reduced to their names

The fixtures in the conftest.py files call these; a component that is not built is a skip naming
the script that builds it, never a fake.
"""
