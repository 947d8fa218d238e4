"""A real Kubernetes node for the test cluster: the kubelet with containerd and runc, in a network
namespace of its own.

What starts, each a real process whose output lands in ``<workdir>/<name>.log``:

- a network namespace ``msn-<pid>-<n>`` joined to this host by a veth pair: the host end is
  ``host_ip``, the node's end ``ip`` (the node address: the kubelet refuses a loopback one, and
  ``kubectl logs``/``exec`` need one the API server reaches). Pods sit on a CNI bridge inside it
  (Debian's containernetworking-plugins, bridge + host-local, masquerading out), so no pod traffic
  leaves this machine, and this host routes to the pod subnet through the node (Prometheus scrapes
  a pod at its address);
- small TCP forwarders on ``host_ip`` to servers that listen on 127.0.0.1 here (the API server,
  S3): :meth:`Node.expose`. The namespace's nat table sends the ``kubernetes`` Service address
  (10.96.0.1:443) to the API server's forwarder, as kube-proxy would, so in-cluster clients work;
  the API server's certificate names that address (tests/harness/cluster.py);
- containerd (Debian's 1.6) with its CRI plugin, ``restrict_oom_score_adj = true`` (processes here
  lack CAP_SYS_RESOURCE, and runc would otherwise fail every sandbox with "can't get final
  child's PID from pipe"), cgroupfs, and the sandbox image imported from an OCI archive this module
  writes (a static ``pause`` built by scripts/build-binaries.sh): no registry is reachable;
- the kubelet (v1.37, scripts/build-binaries.sh), with what this machine needs: cgroup v1 allowed
  (``failCgroupV1: false``), the cgroupfs driver, no QoS cgroups and no node-allocatable
  enforcement. It registers with the admin token, labelled ``miniseries.dev/node=real`` and, unless
  told otherwise, tainted ``miniseries.dev/node=real:NoSchedule`` so only pods that tolerate it
  land here, next to kwok's fake GPU node.

Images reach the node by :meth:`Node.import_image` (``ctr -n k8s.io images import``), from the
archives scripts/build-images.sh caches. containerd's root (its content store and unpacked
snapshots, ~14 GB with both images) is :data:`NODE_STORE`, kept from one node to the next and across
sessions: an image whose config digest and unpacked layers are already there is not imported again
(importing the trainer's 6 GB archive writes it twice, content and snapshots: minutes on this
machine, and once per node before). One node at a time holds it (a lock); a node started while
another runs gets a private root in its workdir, removed afterwards, as every node had before.

Needs root, a cgroup v1 or v2 hierarchy, and Debian's containerd, runc, containernetworking-plugins
and iptables (scripts/install-system-deps.sh). Anything missing is :class:`MissingBinary`, which the
fixtures turn into a skip naming the script to run.

For people, beside ``python -m tests.harness.cluster up``::

    python -m tests.harness.node forward 10.250.0.1:6443 127.0.0.1:6443     # what Node.expose runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness import cpu
from tests.harness.binaries import CACHE, REPO, MissingBinary, find_binary
from tests.harness.builds import built, job_status
from tests.harness.cluster import Cluster
from tests.harness.processes import Stack, unwatch, wait_for

NODE_LABEL = "miniseries.dev/node"
NODE_TAINT = {"key": NODE_LABEL, "value": "real", "effect": "NoSchedule"}
#: what a pod spec adds to land on the real node
TOLERATION = {"key": NODE_LABEL, "operator": "Equal", "value": "real", "effect": "NoSchedule"}
SELECTOR = {NODE_LABEL: "real"}
#: the ``kubernetes`` Service's address with the test cluster's --service-cluster-ip-range
KUBERNETES_SERVICE_IP = "10.96.0.1"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
#: the CRI's containerd namespace, and the cgroup its containers run below (the kubelet runs without
#: QoS cgroups, so containerd's default parent)
CONTAINERD_NAMESPACE = "k8s.io"
CNI_BIN = Path("/usr/lib/cni")
IMAGES = Path(os.environ.get("MINISERIES_IMAGE_CACHE", CACHE.parent / "images"))
#: containerd's root for the node, kept between nodes and sessions (see above)
NODE_STORE = Path(os.environ.get("MINISERIES_NODE_STORE", CACHE.parent / "node-containerd"))


def _need(cmd: str) -> str:
    found = shutil.which(cmd, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise MissingBinary(f"{cmd} not found (run scripts/install-system-deps.sh)")
    return found


def run(*cmd: str, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# ---- the sandbox image: an OCI archive holding one static binary that waits for a signal
def pause_archive(dest_dir: Path = IMAGES) -> Path:
    """``registry.k8s.io/pause:3.10`` as an OCI image archive, from the ``pause`` binary that
    scripts/build-binaries.sh builds; written once per binary, deterministic (fixed mtimes)."""
    binary = find_binary("pause")
    data = binary.read_bytes()
    out = dest_dir / f"pause-{hashlib.sha256(data).hexdigest()[:16]}.tar"
    if out.is_file():
        return out
    dest_dir.mkdir(parents=True, exist_ok=True)
    return one_file_archive(out, PAUSE_IMAGE, "pause", data)


def one_file_archive(out: Path, ref: str, name: str, data: bytes) -> Path:
    """An OCI image archive at ``out``, named ``ref``, whose one layer holds the executable ``/name``
    (``data``), its entrypoint, run as 65535: deterministic (fixed mtimes)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        t.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    blobs: dict[str, bytes] = {}

    def blob(b: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(b).hexdigest()
        blobs[digest] = b
        return {"digest": digest, "size": len(b)}

    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [f"/{name}"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer_bytes)}],
        },
        sort_keys=True,
    ).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **blob(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as t:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
        files.update({f"blobs/sha256/{d.split(':')[1]}": b for d, b in blobs.items()})
        for name, b in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(b), 0
            t.addfile(info, io.BytesIO(b))
    tmp.replace(out)
    return out


def archive_image(archive: Path) -> tuple[list[str], str]:
    """The image names an archive holds and its config digest (``sha256:...``, what the CRI calls
    the image's id), read from its index: a docker-archive's ``manifest.json`` (scripts/build-images.sh)
    or an OCI layout's ``index.json`` (:func:`pause_archive`). Only tar headers and the small JSON
    members are read, not the layers."""
    with tarfile.open(archive) as t:

        def member(name: str) -> Any:
            f = t.extractfile(name)
            if f is None:
                raise RuntimeError(f"{archive}: {name} is not a file")
            return json.loads(f.read())

        names = set(t.getnames())
        if "manifest.json" in names:
            (entry,) = member("manifest.json")
            return list(entry["RepoTags"]), "sha256:" + entry["Config"].removesuffix(".json")
        index = member("index.json")
        refs = [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]
        manifest = member("blobs/sha256/" + index["manifests"][0]["digest"].split(":", 1)[1])
        return refs, str(manifest["config"]["digest"])


# ---- built images (scripts/build-images.sh)
@dataclass(frozen=True)
class BuiltImage:
    ref: str
    archive: Path


def built_images(build: bool = True) -> dict[str, BuiltImage]:
    """The operator and trainer images of this checkout, built (or found in the cache) by
    scripts/build-images.sh: ``{"operator": BuiltImage, "trainer": BuiltImage}``."""
    script = REPO / "scripts" / "build-images.sh"
    if build and job_status("images") != "none":
        # `make test` builds them in the background: wait for that build (its failure fails here, with
        # its log), then the call below finds them cached
        with contextlib.suppress(MissingBinary):
            built(lambda: built_images(build=False), job="images", what="the operator and trainer images")
    if build:
        _need("buildah")
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/build-images.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
    printed = dict(line.split("=", 1) for line in run("bash", str(script), "--print").stdout.split())
    images = {
        n: BuiltImage(printed[f"{n.upper()}_IMAGE"], Path(printed[f"{n.upper()}_ARCHIVE"]))
        for n in ("operator", "trainer")
    }
    for name, image in images.items():
        if not image.archive.is_file():
            raise MissingBinary(f"image {name} not built: {image.archive} missing (run scripts/build-images.sh)")
    return images


def say(config: Any, line: str) -> None:
    """A line on pytest's terminal (``config``: the session's pytest.Config), shown even when the
    test passes: where a node's start and imports went."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # a fixture's output is captured otherwise
            reporter.write_line(line)
    print(line, file=sys.stderr)


# ---- a TCP forwarder: `python -m tests.harness.node forward LISTEN TARGET`
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


def _hostport(s: str) -> tuple[str, int]:
    host, port = s.rsplit(":", 1)
    return host, int(port)


# ---- the node
@dataclass
class Node:
    name: str
    ip: str  # the node's address, inside its network namespace
    host_ip: str  # this host's end of the veth pair: where pods reach servers of this host
    netns: str
    pod_cidr: str
    workdir: Path
    containerd_sock: Path
    stack: Stack
    cluster: Cluster
    root: Path = Path()  # containerd's root: NODE_STORE, or a private one in workdir
    exposed: dict[int, int] = field(default_factory=dict)
    startup_s: float = 0.0  # from nothing to Ready (and GPUs advertised)
    #: seconds per phase of its start and of each import ("import trainer-....tar (present)"), in order
    phases: dict[str, float] = field(default_factory=dict)

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(
            "ctr", f"--address={self.containerd_sock}", f"--namespace={CONTAINERD_NAMESPACE}", *args, timeout=timeout
        )

    def import_image(self, archive: Path) -> float:
        """``ctr -n k8s.io images import``: the image is then present for pods (pull policy
        IfNotPresent or Never); returns the seconds it took. Skipped when every name the archive
        holds already is that image (the same config digest), complete and unpacked. An older
        image under such a name is removed afterwards, with what only it used (the layers a new
        build shares with it, torch's, stay unpacked)."""
        t0 = time.monotonic()
        refs, config = archive_image(archive)
        if all(self.stored_config(ref) == config for ref in refs):
            self.phases[f"import {archive.name} (present)"] = time.monotonic() - t0
            return 0.0
        before = self._listed()
        replaced = {cols[2] for cols in before if cols[0] in refs}
        self.ctr("images", "import", "--no-unpack=false", str(archive), timeout=1800)
        after = self._listed()
        if stale := [cols[0] for cols in after if cols[2] in replaced and cols[0] not in refs]:
            self.ctr("images", "rm", "--sync", *stale, timeout=600)
        took = time.monotonic() - t0
        self.phases[f"import {archive.name}"] = took
        return took

    def phase_line(self) -> str:
        """``node real-node-0: network, forwarders 0.4 s, containerd 1.0 s, ...``: where its start
        and its imports went (tests/container/conftest.py and tests/e2e/test_containers.py print it)."""
        where = "kept store" if self.root == NODE_STORE else "private root"
        return f"node {self.name} ({where}): " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())

    def stored_config(self, ref: str) -> str | None:
        """The config digest of image ``ref`` in this containerd, if its content is complete and
        unpacked for the CRI's snapshotter; else None."""
        # REF TYPE DIGEST STATUS SIZE UNPACKED, STATUS and SIZE with spaces in them
        for line in self.ctr("images", "check", f"name=={ref}", timeout=60).stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref and "complete" in line and cols[-1] == "true":
                manifest = json.loads(self.ctr("content", "get", cols[2], timeout=60).stdout)
                if "config" in manifest:  # a single manifest, what both archives' imports make
                    return str(manifest["config"]["digest"])
        return None

    def remove_image(self, ref: str) -> None:
        """Remove ``ref`` and every other name of the same image (the CRI adds ``sha256:<config>``),
        waiting for containerd to collect its content and snapshots."""
        listed = self._listed()
        target = next((cols[2] for cols in listed if cols[0] == ref), None)
        if target is not None:
            names = [cols[0] for cols in listed if cols[2] == target]
            self.ctr("images", "rm", "--sync", *names, timeout=600)

    def _listed(self) -> list[list[str]]:
        """``ctr images ls``: REF, TYPE, DIGEST (the manifest's), ... per image name."""
        rows = [ln.split() for ln in self.ctr("images", "ls", timeout=60).stdout.splitlines()[1:]]
        return [cols for cols in rows if len(cols) > 2]

    def images(self) -> list[str]:
        return self.ctr("images", "ls", "-q").stdout.split()

    def expose(self, port: int) -> str:
        """A server listening on 127.0.0.1:``port`` here, reachable from the node and its pods at
        the returned ``host_ip:port`` (a forwarder process, stopped with the node)."""
        if port not in self.exposed:
            proc = self.stack.start(
                f"forward-{port}",
                [sys.executable, "-m", "tests.harness.node", "forward", f"{self.host_ip}:{port}", f"127.0.0.1:{port}"],
                env={"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
            )
            wait_for(f"forwarder {self.host_ip}:{port}", lambda: _connects(self.host_ip, port), 30, proc)
            self.exposed[port] = proc.pid
        return f"{self.host_ip}:{port}"

    def exec_in_netns(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.netns, *cmd, check=check, timeout=timeout)


def _connects(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _free_link(start: int = 0) -> int:
    """An index n for which 10.250.n.0/30 and 10.251.n.0/24 are unused on this host."""
    used = run("ip", "-o", "addr").stdout + run("ip", "route").stdout
    for n in range(start, 250):
        if f"10.250.{n}." not in used and f"10.251.{n}." not in used:
            return n
    raise RuntimeError("no free 10.250.n.0/30 link for the node")


def containerd_config(workdir: Path, sock: Path, cni_conf: Path, root: Path) -> str:
    return f"""version = 2
root = "{root}"
state = "{workdir}/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # processes here lack CAP_SYS_RESOURCE: without this runc fails every sandbox
  restrict_oom_score_adj = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{_need("runc")}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""


def kubelet_config(node: Node, kubelet_dir: Path, taint: bool) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # what this machine needs (cgroup v1 hierarchies, a cgroup2 mount for hugetlb only)
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # the API server calls it without a client certificate (logs, exec): the node's address is
        # reachable from this host only
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_sock}",
        "registerWithTaints": [NODE_TAINT] if taint else [],
        "resolvConf": "",  # no cluster DNS and no outside world: pods get no resolver
        "failSwapOn": False,
        "staticPodPath": "",
        "volumePluginDir": str(kubelet_dir / "volume-plugins"),
        "podLogsDirectory": str(kubelet_dir / "pod-logs"),
        # a shared disk, filled by whatever else runs here: never evict pods or collect images
        # the test imported because the disk looks full
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "24h",
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "2s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "containerLogMaxSize": "10Mi",
        "shutdownGracePeriod": "0s",
    }


def _hold_store(workdir: Path) -> tuple[Path, int | None]:
    """containerd's root for a new node: :data:`NODE_STORE` with its lock held (the returned file
    descriptor, closed when the node is gone), or, while another node holds it, a private root in
    ``workdir`` (None). Two containerds must never share a root."""
    NODE_STORE.mkdir(parents=True, exist_ok=True)
    fd = os.open(NODE_STORE.parent / f"{NODE_STORE.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return workdir / "containerd" / "root", None
    return NODE_STORE, fd


def _remove_containers(node: Node) -> list[str]:
    """Delete every container (pods' and their sandboxes', stopped) and its snapshot from the
    node's containerd: the kept root then holds images only. Returns the ids it found."""
    ids = node.ctr("containers", "ls", "-q", timeout=60).stdout.split()
    if ids:
        node.ctr("containers", "rm", *ids, timeout=300)
    return ids


def _pod_netns(node: Node) -> list[str]:
    """The network namespaces containerd made for the node's pods (``/var/run/netns/cni-...``, a
    host-wide place): they outlive containers that are killed rather than stopped through the CRI."""
    found: list[str] = []
    with contextlib.suppress(Exception):
        for cid in node.ctr("containers", "ls", "-q", timeout=30).stdout.split():
            with contextlib.suppress(Exception):
                info = json.loads(node.ctr("containers", "info", cid, timeout=30).stdout)
                for ns in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                    path = ns.get("path", "")
                    if ns.get("type") == "network" and Path(path).parent.name == "netns" and path not in found:
                        found.append(path)
    return found


def _stop_containers(node: Node) -> None:
    """Stop the node's pods through the kubelet (the CRI tears their sandboxes down), then kill
    and delete whatever containerd still runs: runc processes and shims would outlive containerd
    and the kubelet."""
    with contextlib.suppress(Exception):
        # cordoned first: a controller replacing a deleted pod must not bring it back here
        node.cluster.kubectl("cordon", node.name, check=False, timeout=60)
        node.cluster.kubectl("delete", "pods", "-A", f"--field-selector=spec.nodeName={node.name}",
                             "--grace-period=0", "--force", "--wait=false", check=False, timeout=60)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "RUNNING" in node.ctr("tasks", "ls", timeout=30).stdout:
            time.sleep(0.5)
    for name, proc in node.stack.procs:  # the kubelet next: it would restart what is killed below
        if name == "kubelet" and proc.poll() is None:
            unwatch(proc)  # stopped on purpose: no wait may fail for it
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
    with contextlib.suppress(Exception):
        for task in node.ctr("tasks", "ls", "-q", timeout=30).stdout.split():
            with contextlib.suppress(Exception):
                node.ctr("tasks", "kill", "--signal=SIGKILL", task, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = node.ctr("tasks", "ls", timeout=30).stdout
            if "RUNNING" not in listed:
                break
            time.sleep(0.2)
        for task in node.ctr("tasks", "ls", "-q", timeout=30).stdout.split():
            with contextlib.suppress(Exception):
                node.ctr("tasks", "delete", "--force", task, timeout=30)


def _kill_shims(sock: Path) -> None:
    """containerd's shims are daemons of their own; end those that serve this node's containerd."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(sock).encode() in b" ".join(cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def _unmount_under(path: Path) -> None:
    """The kubelet's volume mounts (tmpfs for tokens and secrets) and containerd's overlay
    mounts stay behind when they are killed: unmount everything under the node's directory."""
    prefix = str(path.resolve())
    for _ in range(3):
        mounts = [
            line.split()[4].encode().decode("unicode_escape")
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ]
        ours = sorted({m for m in mounts if m == prefix or m.startswith(prefix + "/")}, key=len, reverse=True)
        if not ours:
            return
        for m in ours:
            subprocess.run(["umount", "-l", m], capture_output=True)


@contextlib.contextmanager
def real_node(
    cluster: Cluster,
    workdir: Path,
    name: str = "real-node-0",
    *,
    taint: bool = True,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
) -> Iterator[Node]:
    """A kubelet + containerd node registered to ``cluster``, Ready; everything it started and
    mounted is gone afterwards. ``gpus`` advertises that many ``nvidia.com/gpu`` (an extended
    resource patched into the node's status, as the Kubernetes docs advertise one by hand): pods
    that request GPUs then schedule here and run on its CPU."""
    if os.geteuid() != 0:
        raise MissingBinary("the real node needs root (network namespace, containerd, kubelet)")
    kubelet = find_binary("kubelet")
    pause = pause_archive()
    containerd, ip_cmd, iptables = _need("containerd"), _need("ip"), _need("iptables")
    _need("runc"), _need("ctr"), _need("nsenter")
    if not (CNI_BIN / "bridge").is_file():
        raise MissingBinary(
            f"{CNI_BIN}/bridge missing (containernetworking-plugins: run scripts/install-system-deps.sh)"
        )
    t_start = t_phase = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir)
    n = _free_link()
    netns, host_dev, node_dev = f"msn-{os.getpid()}-{n}", f"msnh{n}", f"msnn{n}"
    host_ip, node_ip, pod_cidr = f"10.250.{n}.1", f"10.250.{n}.2", f"10.251.{n}.0/24"
    sock = workdir / "containerd.sock"
    root, store_lock = _hold_store(workdir)
    node = Node(name, node_ip, host_ip, netns, pod_cidr, workdir, sock, stack, cluster, root=root)

    def phase(what: str) -> None:
        nonlocal t_phase
        now = time.monotonic()
        node.phases[what] = now - t_phase
        t_phase = now

    try:
        # --- the network: a namespace, a veth pair into it, routes both ways
        run(ip_cmd, "netns", "add", netns)
        run(ip_cmd, "link", "add", host_dev, "type", "veth", "peer", "name", node_dev)
        run(ip_cmd, "link", "set", node_dev, "netns", netns)
        run(ip_cmd, "addr", "add", f"{host_ip}/30", "dev", host_dev)
        run(ip_cmd, "link", "set", host_dev, "up")
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{node_ip}/30", "dev", node_dev],
            ["ip", "link", "set", node_dev, "up"],
            # no default route: this host's end is the only way out, and nothing is forwarded past it
            # (an image pull's DNS lookup fails at once instead of leaving); services go to this host
            ["ip", "route", "add", "10.96.0.0/16", "via", host_ip],
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ):
            node.exec_in_netns(*cmd)
        run(ip_cmd, "route", "add", pod_cidr, "via", node_ip, "dev", host_dev)  # goes with the veth
        # --- forwarders to this host's servers, and the `kubernetes` Service as kube-proxy would
        api_port = int(cluster.server.rsplit(":", 1)[1])
        node.expose(api_port)
        for chain in ("PREROUTING", "OUTPUT"):
            node.exec_in_netns(iptables, "-t", "nat", "-A", chain, "-d", f"{KUBERNETES_SERVICE_IP}/32", "-p", "tcp",
                               "--dport", "443", "-j", "DNAT", "--to-destination", f"{host_ip}:{api_port}")  # fmt: skip
        # --- CNI: a bridge inside the namespace
        cni_conf = workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-miniseries.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "miniseries",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": str(workdir / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))  # fmt: skip
        # --- containerd, in the namespace's network only (the host's mounts, so it sees the kubelet's volumes)
        cfg = workdir / "containerd.toml"
        cfg.write_text(containerd_config(workdir, sock, cni_conf, root))
        path = os.pathsep.join(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        nsenter = ["nsenter", f"--net=/run/netns/{netns}", "--"]

        def start_containerd() -> subprocess.Popen[bytes]:
            cd = stack.start(
                "containerd", [*nsenter, containerd, f"--config={cfg}", "--log-level=info"], env={"PATH": path}
            )
            ok = lambda: run("ctr", f"--address={sock}", "version", check=False).returncode == 0  # noqa: E731
            wait_for("containerd", ok, 60, cd)
            return cd

        phase("network, forwarders")
        cd = start_containerd()
        if _remove_containers(node):
            # a node that ended without its teardown (a killed session) left its pods in the kept
            # root: deleted, and containerd started afresh so that its CRI forgets them too
            unwatch(cd)
            cd.terminate()
            cd.wait(timeout=30)
            stack.procs.remove(("containerd", cd))
            start_containerd()
        phase("containerd")
        cpu.count_cgroup(CONTAINERD_NAMESPACE)  # its containers' CPU is the tests' too (durations.py)
        node.import_image(pause)
        t_phase = time.monotonic()
        # --- the kubelet
        kdir = workdir / "kubelet"
        (kdir / "volume-plugins").mkdir(parents=True, exist_ok=True)
        kubeconfig = workdir / "kubelet.kubeconfig"
        kc = yaml.safe_load(cluster.kubeconfig.read_text())
        kc["clusters"][0]["cluster"]["server"] = f"https://{host_ip}:{api_port}"
        kc["clusters"][0]["cluster"]["tls-server-name"] = "localhost"  # the forwarder's address is not in the cert
        kubeconfig.write_text(yaml.safe_dump(kc))
        kcfg = workdir / "kubelet.yaml"
        kcfg.write_text(yaml.safe_dump(kubelet_config(node, kdir, taint)))
        node_labels = {NODE_LABEL: "real", **(labels or {})}
        stack.start(
            "kubelet",
            [*nsenter, str(kubelet), f"--config={kcfg}", f"--kubeconfig={kubeconfig}", f"--root-dir={kdir}",
             f"--cert-dir={kdir / 'pki'}", f"--hostname-override={name}", f"--node-ip={node_ip}",
             "--node-labels=" + ",".join(f"{k}={v}" for k, v in node_labels.items()), "--v=1"],
            env={"PATH": path},
        )  # fmt: skip
        kubelet_proc = stack.procs[-1][1]
        ready = "-o=jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        wait_for(
            f"node {name} Ready",
            lambda: cluster.kubectl("get", "node", name, ready, check=False).stdout == "True",
            180,
            kubelet_proc,
        )
        if gpus:
            patch = {"status": {"capacity": {"nvidia.com/gpu": str(gpus)}}}
            cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
            alloc = "-o=jsonpath={.status.allocatable.nvidia\\.com/gpu}"
            wait_for(
                f"node {name} allocatable GPUs",
                lambda: cluster.kubectl("get", "node", name, alloc).stdout == str(gpus),
                60,
            )
        phase("kubelet Ready")
        node.startup_s = time.monotonic() - t_start
        (workdir / "startup.txt").write_text(f"{node.startup_s:.1f}\n")
        yield node
    finally:
        # the pods first (their containers would outlive the kubelet), then the processes
        pod_netns: list[str] = []
        if sock.exists():
            _stop_containers(node)
            pod_netns = _pod_netns(node)
            with contextlib.suppress(Exception):
                _remove_containers(node)  # the kept root holds images only
        stack.stop()
        _kill_shims(sock)
        _unmount_under(workdir)
        _unmount_under(root)
        # a private root: the images' content and unpacked snapshots, twice their size, ~14 GB
        shutil.rmtree(workdir / "containerd", ignore_errors=True)
        if store_lock is not None:
            os.close(store_lock)
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)
        for path in pod_netns:
            subprocess.run(["ip", "netns", "delete", Path(path).name], capture_output=True)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        subprocess.run(["ip", "link", "delete", host_dev], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.node", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    fwd = sub.add_parser("forward", help="forward TCP connections from LISTEN (host:port) to TARGET (host:port)")
    fwd.add_argument("listen")
    fwd.add_argument("target")
    sub.add_parser("pause-image", help="write the sandbox image's OCI archive and print its path")
    args = p.parse_args(argv)
    if args.command == "forward":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(_forward(_hostport(args.listen), _hostport(args.target)))
        return 0
    print(pause_archive())
    return 0


if __name__ == "__main__":
    sys.exit(main())
