"""The kubelet's side of CRI: one gRPC channel to a CRI v1 runtime (kubeling's own
`kubeling cri`, or containerd's socket) with the RuntimeService and ImageService stubs.

    cri = CriClient("unix:///run/kubeling/kubeling.sock")
    version = cri.runtime.Version(api_pb2.VersionRequest())
    cri.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="busybox")))

Calls take `timeout=` seconds like any gRPC stub call; `CriClient.timeout` is the default
the kubelet's components use (the kubelet's --runtime-request-timeout, 2 minutes), and
pulls get longer.
"""

from __future__ import annotations

import grpc

from cri.api import api_pb2, api_pb2_grpc

DEFAULT_ENDPOINT = "unix:///run/kubeling/kubeling.sock"
# gRPC's default 4 MiB receive limit is too small for ListContainers on a busy node;
# the kubelet allows 16 MiB.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def channel_target(endpoint: str) -> str:
    """`unix:///path`, `unix:/path` or a bare `/path` → gRPC's `unix:/path` target."""
    if endpoint.startswith("unix://"):
        return "unix:" + endpoint[len("unix://") :]
    if endpoint.startswith("/"):
        return "unix:" + endpoint
    return endpoint


class CriClient:
    """The runtime and image services of one endpoint over one channel. Thread-safe
    (gRPC channels and stubs are)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, timeout: float = 120.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            channel_target(endpoint),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def wait_ready(self, timeout: float) -> api_pb2.VersionResponse:
        """The runtime's Version once it answers. grpc.FutureTimeoutError when the
        endpoint does not accept a connection within `timeout` seconds, grpc.RpcError
        when Version fails."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)
        response: api_pb2.VersionResponse = self.runtime.Version(
            api_pb2.VersionRequest(), timeout=timeout
        )
        return response

    def close(self) -> None:
        self.channel.close()
