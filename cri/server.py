"""`kubeling cri`: the CRI v1 gRPC server on a unix socket.

    kubeling cri [--socket /run/kubeling/kubeling.sock] [--images-root DIR]
                 [--registries FILE] [--state-dir DIR] [--pod-cidr CIDR]
                 [--bridge NAME] [--chain-prefix KUBELING] [--veth-prefix veth]
                 [--netns-dir DIR] [--sandbox-image REF] [--streaming-address HOST:PORT]
                 [--log-level info]

Serves runtime.v1.RuntimeService and runtime.v1.ImageService (cri.api) from one
process: a thread pool serves the RPCs, the image store is thread-safe. Before the
server has threads, the node (cri.node: supervisor, pod network, records, sandbox
image) is opened. The socket is created 0660 and removed on shutdown (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from cri.api import api_pb2_grpc
from cri.image_service import ImageService
from cri.network import NetworkConfig
from cri.node import DEFAULT_SANDBOX_IMAGE, DEFAULT_STATE_DIR, Node, open_node
from cri.runtime_service import RuntimeService
from cri.streaming.server import DEFAULT_ADDRESS as DEFAULT_STREAMING_ADDRESS
from cri.streaming.server import StreamingServer
from images.registries import RegistryConfig
from images.store import ImageStore

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/kubeling/kubeling.sock"
DEFAULT_IMAGES_ROOT = "/var/lib/kubeling/images"
DEFAULT_REGISTRIES = "/etc/kubeling/registries.toml"
# The kubelet sends and accepts up to 16 MiB (gRPC's Python default is 4 MiB).
MAX_MESSAGE = 16 * 1024 * 1024
# Handler threads: one per call in progress. A kubelet starting ~100 pods at once has
# as many pod workers calling, and with 16 threads quick status calls queued behind
# other pods' sandbox and container creation, which mostly wait (on netlink, on the
# supervisor). More threads than that also cost: they share one interpreter, and with
# 64 a quarter of the server's time went to handing the GIL around. 100 pods at once,
# four runs each way, interleaved: 24 threads took 0-9% less of the server's CPU and
# started the pods 0-0.7 s sooner than 64.
WORKERS = 24


def build_server(
    socket_path: str,
    store: ImageStore,
    *,
    node: Node | None = None,
    streaming: StreamingServer | None = None,
    workers: int = WORKERS,
) -> tuple[grpc.Server, RuntimeService]:
    """A started server bound to `socket_path` (an existing socket file is replaced).
    Without a `node` it serves images and runtime info only (no pods); without a
    `streaming` server, Exec, Attach and PortForward answer UNIMPLEMENTED."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cri"),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
        ],
    )
    runtime_service = RuntimeService(node, streaming)
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(runtime_service, server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(store), server)
    os.makedirs(os.path.dirname(socket_path) or ".", mode=0o755, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    os.chmod(socket_path, 0o660)
    return server, runtime_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeling cri", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=DEFAULT_SOCKET)
    parser.add_argument("--images-root", default=DEFAULT_IMAGES_ROOT)
    parser.add_argument("--registries", default=DEFAULT_REGISTRIES)
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    parser.add_argument("--pod-cidr", default="10.85.0.0/16")
    parser.add_argument("--bridge", default="kubeling0")
    # Two CRI servers on one host need their own chains, veth names and netns files.
    parser.add_argument("--chain-prefix", default="KUBELING", help="iptables chains PREFIX-*")
    parser.add_argument("--veth-prefix", default="veth", help="host-side veth names")
    parser.add_argument("--netns-dir", default="/run/kubeling/netns")
    parser.add_argument("--sandbox-image", default=DEFAULT_SANDBOX_IMAGE)
    parser.add_argument("--streaming-address", default=DEFAULT_STREAMING_ADDRESS,
                        help="host:port of the Exec/Attach/PortForward server")  # fmt: skip
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        registries = RegistryConfig.load(Path(args.registries))
        store = ImageStore(Path(args.images_root), registries)
    except Exception as e:
        sys.stderr.write(f"kubeling cri: {e}\n")
        return 1
    state_dir = Path(args.state_dir)
    try:
        network = NetworkConfig(
            bridge=args.bridge, pod_cidr=args.pod_cidr, state_dir=state_dir / "network",
            chain_prefix=args.chain_prefix, veth_prefix=args.veth_prefix,
            netns_dir=Path(args.netns_dir),
        )  # fmt: skip
        node = open_node(state_dir, store, network, sandbox_image=args.sandbox_image)
    except Exception as e:
        sys.stderr.write(f"kubeling cri: {e}\n")
        store.close()
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        streaming = StreamingServer(args.streaming_address)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"kubeling cri: streaming server on {args.streaming_address}: {e}\n")
        store.close()
        return 1
    try:
        server, runtime_service = build_server(args.socket, store, node=node, streaming=streaming)
    except Exception as e:
        sys.stderr.write(f"kubeling cri: serve on {args.socket}: {e}\n")
        streaming.stop()
        store.close()
        return 1
    streaming.start()
    log.info("serving CRI v1 on unix://%s, streaming on %s", args.socket, streaming.base_url)
    stop.wait()
    runtime_service.close()  # ends the event streams at once, with UNAVAILABLE
    server.stop(grace=5).wait()
    streaming.stop()
    store.close()
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    return 0
