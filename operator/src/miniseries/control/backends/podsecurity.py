"""Every pod the operator creates meets the `restricted` Pod Security Standard (issue 28 item 2).

A namespace labelled `pod-security.kubernetes.io/enforce: restricted` has kube-apiserver's built-in
PodSecurity admission refuse any pod that does not say all of: runAsNonRoot, no privilege escalation,
every capability dropped, a RuntimeDefault (or Localhost) seccomp profile. Beyond what it checks:

- the trainer image's uid and gid (trainer_image/Dockerfile: `useradd --uid 1000 trainer`), named
  rather than taken from the image, so a custom image with `USER root` fails to start (the kubelet's
  runAsNonRoot check) instead of running as root, and a USER given by name needs no numeric check;
- a read-only root filesystem: what the trainer writes goes to the store; the rest is scratch on
  emptyDirs: /tmp (tempfile, torch inductor's and tiktoken's caches) and the image user's HOME
  (~/.triton, ~/.cache), both gone with the pod;
- no ServiceAccount token: the trainer talks to the store, never to the API server
  (`automountServiceAccountToken` is a pod field; a TrainJob cannot patch it, so the chart's
  ClusterTrainingRuntime sets it).

The store's files are shared through their group (contract/store/local.py, files 0640, directories
2770): on a volume both mount, the trainer (uid 1000) and the operator (uid 65532) must carry one group,
and the kubelet gives a volume its pod's fsGroup. So the trainer's pods get the operator's fsGroup
(65532, charts/miniseries-operator/templates/deployment.yaml): two different fsGroups on one volume
would have each pod's kubelet chown it away from the other.
"""

from __future__ import annotations

from typing import Any

#: trainer_image/Dockerfile's user, and its HOME.
TRAINER_UID = 1000
#: The group a shared store volume belongs to: the operator's (the chart's Deployment fsGroup).
STORE_GROUP = 65532
TRAINER_HOME = "/home/trainer"
#: The writable places of a read-only root filesystem: (volume name, mount path).
SCRATCH = (("miniseries-tmp", "/tmp"), ("miniseries-home", TRAINER_HOME))


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "runAsGroup": TRAINER_UID,
        "fsGroup": STORE_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes() -> list[dict[str, Any]]:
    return [{"name": name, "emptyDir": {}} for name, _ in SCRATCH]


def scratch_mounts() -> list[dict[str, Any]]:
    return [{"name": name, "mountPath": path} for name, path in SCRATCH]


def restrict(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """`pod_spec` (with its containers) made restricted, in place; returned for chaining."""
    pod_spec["securityContext"] = pod_security_context()
    pod_spec["automountServiceAccountToken"] = False
    pod_spec["volumes"] = [*pod_spec.get("volumes", []), *scratch_volumes()]
    for c in pod_spec["containers"]:
        c["securityContext"] = container_security_context()
        c["volumeMounts"] = [*c.get("volumeMounts", []), *scratch_mounts()]
        # HOME as the mount, whatever the image's /etc/passwd says (a custom image's user may differ)
        c["env"] = [*c.get("env", []), {"name": "HOME", "value": TRAINER_HOME}]
    return pod_spec
