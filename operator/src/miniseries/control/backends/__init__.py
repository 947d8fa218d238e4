"""What a run's job is on each backend (PyTorchJob, TrainJob): one interface (base.JobBackend), one
module per backend (pytorchjob.py, trainjob.py), their registry (registry.py), the pieces of a trainer
pod they share (pod_template.py), what every object of a sweep carries (manifests.py) and the pod
security every pod meets (podsecurity.py). Pure: dicts in, dicts out.
"""
