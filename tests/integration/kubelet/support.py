"""Helpers shared by the kubelet integration tests: a real `kubeling apiserver`
process on a memory store (`ApiServer`, `apiserver`), a `KubeletConfig` pointed at a
test's API server and CRI server (`kubelet_config`), the Kubelet running in a thread
(`running_kubelet`; it registers its own Node), pod manifests (`pod`), and polling
(`wait_for`).

The CRI server is tests/integration/cri/support.Cri (in this process, with its own
bridge, veth and chain prefixes, state directory and cgroup parent); conftest.py's
`cri` fixture makes one per test and the kubelet's cgroup root is that cgroup
parent, so its teardown removes the pod cgroups too.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubeapi.client import ApiError, Client
from kubelet.config import KubeletConfig
from kubelet.kubelet import Kubelet
from tests.integration.control.support import free_port, stop
from tests.integration.control.support import wait_for as poll
from tests.integration.cri.support import Cri

KUBELING = str(Path(sys.executable).parent / "kubeling")


@dataclass
class ApiServer:
    """A `kubeling apiserver --store memory://` process and an admin client of it."""

    data: Path
    process: subprocess.Popen[str]
    client: Client

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"


@contextlib.contextmanager
def apiserver(data: Path) -> Iterator[ApiServer]:
    """Start an API server with its data (pki, kubeconfig) under `data`; stop it by pid
    on the way out."""
    process = subprocess.Popen(
        [
            KUBELING,
            "apiserver",
            "--data-dir",
            str(data),
            "--store",
            "memory://",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the API on" in line, line
        client = Client.from_kubeconfig(data / "admin.kubeconfig")
        try:
            yield ApiServer(data, process, client)
        finally:
            client.close()
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def kubelet_config(api: ApiServer, cri: Cri, root: Path, **overrides: Any) -> KubeletConfig:
    """A kubelet of a new node name on `cri`, with its root under `root`, pod cgroups
    below the CRI's cgroup parent, its HTTPS port on a free loopback port, and short
    resync, relist and back-off periods so tests take seconds."""
    config = KubeletConfig(
        kubeconfig=str(api.kubeconfig),
        node_name=unique_name("node"),
        container_runtime_endpoint=f"unix://{cri.socket}",
        root_dir=root,
        address="127.0.0.1",
        port=0,
        node_ip="127.0.0.1",
        cgroup_root=cri.cgroup_parent,
        sync_frequency=2.0,
        pleg_relist_period=0.5,
        file_check_frequency=1.0,
        node_status_update_frequency=2.0,
        runtime_request_timeout=30.0,
        backoff_initial=1.0,
        backoff_max=4.0,
    )
    return replace(config, **overrides)


def pod(
    name: str,
    node: str,
    image: str,
    command: list[str] | None = None,
    *,
    namespace: str = "default",
    restart_policy: str = "Always",
    grace: int = 2,
    **spec: Any,
) -> dict[str, Any]:
    """A pod already bound to `node` (spec.nodeName) with one container `main` running
    `command` (default: sleep for an hour) in `image`."""
    sleeper = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    container = {"name": "main", "image": image, "command": command or sleeper}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": grace,
            "containers": [container],
        },
    }
    body["spec"].update(spec)
    return body


def get_or_none(client: Client, path: str) -> dict[str, Any] | None:
    try:
        return client.get(path)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """The control tests' wait_for, with what is awaited always named."""
    return poll(probe, timeout, what=what)


@contextlib.contextmanager
def running_kubelet(config: KubeletConfig) -> Iterator[Kubelet]:
    """`kubelet.kubelet.Kubelet(config)` running in a thread of this process; stopped
    (workers and watches end, containers stay, as on SIGTERM) on the way out. Yields the
    Kubelet."""
    kubelet = Kubelet(config)
    stopping = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            kubelet.run(stopping)
        except BaseException as e:  # the test sees it on the way out
            failure.append(e)

    thread = threading.Thread(target=run, name=f"kubelet-{config.node_name}", daemon=True)
    thread.start()
    try:
        yield kubelet
    finally:
        stopping.set()
        thread.join(30)
        assert not thread.is_alive(), "the kubelet did not stop within 30 s"
    if failure:
        raise failure[0]
