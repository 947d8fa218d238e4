"""What a run's job is on each backend (PyTorchJob, TrainJob): its manifest, how its status reads
as a job phase, and the pod security every pod of it meets. Pure: dicts in, dicts out.
"""
