"""What the RuntimeService works with on one node, opened once by the server.

    <state>/records/      the CRI's records (cri.store.CriStore)
    <state>/supervisor/   the node supervisor's state (cri.supervisor)
    <state>/sandboxes/    one directory per sandbox (cri.runtime_service.sandbox)
    <state>/network/      IPAM and host-settings journal (cri.network)

`open_node` starts the supervisor (before the gRPC server has threads, as the design
asks), the pod network (so Status reports NetworkReady, or why not) and makes sure
the sandbox image is in the store: kubeling's own pause image is built and imported
when it is missing.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cri.network import NetworkConfig, NetworkError, NetworkManager
from cri.store import CriStore
from cri.supervisor import SupervisorClient, ensure_supervisor
from images import errors as image_errors
from images.build import build_image
from images.metadata import Image
from images.store import ImageStore
from runtime.mounts import mount_rootfs, unmount_rootfs

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/kubeling/cri"
DEFAULT_SANDBOX_IMAGE = "kubeling.local/pause:latest"


@dataclass
class Node:
    state_dir: Path
    images: ImageStore
    store: CriStore
    network: NetworkManager
    supervisor: SupervisorClient
    sandbox_image: str = DEFAULT_SANDBOX_IMAGE

    @property
    def sandboxes_dir(self) -> Path:
        return self.state_dir / "sandboxes"

    def ensure_sandbox_image(self) -> Image:
        """The sandbox image. When missing (never there, or removed since), kubeling's
        pause is built and imported, and any other sandbox image is pulled, as
        containerd pulls its sandbox image on demand."""
        try:
            return self.images.get(self.sandbox_image)
        except image_errors.NotFound:
            if self.sandbox_image != DEFAULT_SANDBOX_IMAGE:
                log.info("pulling the sandbox image %s", self.sandbox_image)
                return self.images.pull(self.sandbox_image)
        with tempfile.TemporaryDirectory(prefix="kubeling-pause-") as layout:
            build_image("pause", Path(layout), tag=DEFAULT_SANDBOX_IMAGE)
            self.images.import_archive(f"oci:{layout}:{DEFAULT_SANDBOX_IMAGE}")
        log.info("imported kubeling's pause image as %s", DEFAULT_SANDBOX_IMAGE)
        return self.images.get(DEFAULT_SANDBOX_IMAGE)

    def mount_image_rootfs(
        self, image: Image, key: str, target: str, undo: contextlib.ExitStack
    ) -> None:
        """Prepare snapshot `key` on `image` and mount it at `target` (the runtime
        performs the mounts), registering both undos on `undo`."""
        mounts = self.images.rootfs(image, key)
        undo.callback(self.images.remove_rootfs, key)
        mount_rootfs(
            [{"type": m.type, "source": m.source, "options": list(m.options)} for m in mounts],
            target,
        )
        undo.callback(unmount_rootfs, target)


def open_node(
    state_dir: Path,
    images: ImageStore,
    network: NetworkConfig | None = None,
    *,
    sandbox_image: str = DEFAULT_SANDBOX_IMAGE,
) -> Node:
    state_dir = state_dir.absolute()
    state_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    supervisor = ensure_supervisor(state_dir / "supervisor")
    config = network or NetworkConfig(state_dir=state_dir / "network")
    manager = NetworkManager(config)
    try:
        manager.start()
    except NetworkError as e:  # Status reports it; setup retries
        log.warning("pod network not ready: %s", e)
    node = Node(
        state_dir=state_dir,
        images=images,
        store=CriStore(state_dir / "records"),
        network=manager,
        supervisor=supervisor,
        sandbox_image=sandbox_image,
    )
    node.sandboxes_dir.mkdir(mode=0o711, exist_ok=True)
    try:
        node.ensure_sandbox_image()
    except image_errors.ImageError as e:  # RunPodSandbox reports it
        log.warning("sandbox image %s: %s", sandbox_image, e)
    return node
