"""The CRI RuntimeService.

Implemented so far: Version, Status, RuntimeConfig, UpdateRuntimeConfig. Pod
sandboxes, containers, streaming and stats are being built on the node
supervisor (cri/supervisor) and the pod network (cri/network); until they land,
those RPCs answer UNIMPLEMENTED (the generated base class does that), which CRI
clients understand.
"""

from __future__ import annotations

import ipaddress
import threading

import grpc

from cri.api import api_pb2, api_pb2_grpc
from cri.errors import InvalidArgument, rpc

RUNTIME_NAME = "kubeling"
RUNTIME_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"
# The CRI version this server speaks (k8s.io/cri-api's, see cri/api/api.proto).
CRI_VERSION = "0.1.0"


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pod_cidr = ""

    @rpc
    def Version(
        self, request: api_pb2.VersionRequest, context: grpc.ServicerContext
    ) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(
            version=CRI_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=RUNTIME_VERSION,
            runtime_api_version=RUNTIME_API_VERSION,
        )

    @rpc
    def Status(
        self, request: api_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.StatusResponse:
        conditions = [
            api_pb2.RuntimeCondition(type="RuntimeReady", status=True),
            api_pb2.RuntimeCondition(
                type="NetworkReady",
                status=False,
                reason="NetworkPluginNotReady",
                message="the pod network is not available in this version of kubeling",
            ),
        ]
        response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=conditions))
        if request.verbose:
            response.info["podCIDR"] = self.pod_cidr
        return response

    @rpc
    def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: grpc.ServicerContext
    ) -> api_pb2.RuntimeConfigResponse:
        # cgroupfs: clients pass cgroupfs-style parents (/kubepods/...), not slices.
        return api_pb2.RuntimeConfigResponse(
            linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=api_pb2.CGROUPFS)
        )

    @rpc
    def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: grpc.ServicerContext
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            for part in cidr.split(","):
                try:
                    ipaddress.ip_network(part.strip())
                except ValueError:
                    raise InvalidArgument(
                        f"runtime_config.network_config.pod_cidr: {part.strip()!r} is not a CIDR"
                    ) from None
        with self._lock:
            self.pod_cidr = cidr
        return api_pb2.UpdateRuntimeConfigResponse()
