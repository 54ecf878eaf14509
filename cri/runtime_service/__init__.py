"""The CRI RuntimeService.

Implemented so far: Version, Status, RuntimeConfig, UpdateRuntimeConfig, the pod
sandbox family (RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
ListPodSandbox: sandbox.py) and the container family (CreateContainer,
StartContainer, StopContainer, RemoveContainer, ListContainers, ContainerStatus,
ExecSync, ReopenContainerLog, ContainerStats, ListContainerStats: containers.py), when
the service is given a `Node`. UpdateContainerResources, streaming, pod sandbox stats
and events are not served yet: those RPCs answer UNIMPLEMENTED (the generated base class
does that), which CRI clients understand.
"""

from __future__ import annotations

import ipaddress
import threading

import grpc

from cri.api import api_pb2, api_pb2_grpc
from cri.errors import InvalidArgument, Unimplemented, rpc
from cri.node import Node
from cri.runtime_service.containers import Containers
from cri.runtime_service.sandbox import Sandboxes

RUNTIME_NAME = "kubeling"
RUNTIME_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"
# The CRI version this server speaks (k8s.io/cri-api's, see cri/api/api.proto).
CRI_VERSION = "0.1.0"


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, node: Node | None = None) -> None:
        self._lock = threading.Lock()
        self.pod_cidr = ""
        self.node = node
        self._containers = Containers(node) if node is not None else None
        self._sandboxes = None
        if node is not None and self._containers is not None:
            self._sandboxes = Sandboxes(
                node,
                stop_containers=self._containers.stop_sandbox,
                remove_containers=self._containers.remove_sandbox,
            )

    def sandboxes(self, context: grpc.ServicerContext) -> Sandboxes:
        if self._sandboxes is None:
            raise Unimplemented("this server runs no pods")
        return self._sandboxes

    def containers(self, context: grpc.ServicerContext) -> Containers:
        if self._containers is None:
            raise Unimplemented("this server runs no containers")
        return self._containers

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
        if self.node is None:
            network = api_pb2.RuntimeCondition(
                type="NetworkReady",
                status=False,
                reason="NetworkPluginNotReady",
                message="this server runs no pod network",
            )
        else:
            ready = self.node.network.readiness()
            network = api_pb2.RuntimeCondition(
                type="NetworkReady", status=ready.ready, reason=ready.reason, message=ready.message
            )
        conditions = [api_pb2.RuntimeCondition(type="RuntimeReady", status=True), network]
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

    # -- pod sandboxes (sandbox.py) -------------------------------------------------------

    @rpc
    def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: grpc.ServicerContext
    ) -> api_pb2.RunPodSandboxResponse:
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=self.sandboxes(context).run(request))

    @rpc
    def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: grpc.ServicerContext
    ) -> api_pb2.StopPodSandboxResponse:
        self.sandboxes(context).stop(request.pod_sandbox_id)
        return api_pb2.StopPodSandboxResponse()

    @rpc
    def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemovePodSandboxResponse:
        self.sandboxes(context).remove(request.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()

    @rpc
    def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.PodSandboxStatusResponse:
        return self.sandboxes(context).status(request)

    @rpc
    def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodSandboxResponse:
        return self.sandboxes(context).list(request)

    # -- containers (containers.py) -------------------------------------------------------

    @rpc
    def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.CreateContainerResponse:
        return api_pb2.CreateContainerResponse(
            container_id=self.containers(context).create(request)
        )

    @rpc
    def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.StartContainerResponse:
        self.containers(context).start(request.container_id)
        return api_pb2.StartContainerResponse()

    @rpc
    def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.StopContainerResponse:
        self.containers(context).stop(request.container_id, float(request.timeout))
        return api_pb2.StopContainerResponse()

    @rpc
    def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemoveContainerResponse:
        self.containers(context).remove(request.container_id)
        return api_pb2.RemoveContainerResponse()

    @rpc
    def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListContainersResponse:
        return self.containers(context).list(request)

    @rpc
    def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.ContainerStatusResponse:
        return self.containers(context).status(request)

    @rpc
    def ExecSync(
        self, request: api_pb2.ExecSyncRequest, context: grpc.ServicerContext
    ) -> api_pb2.ExecSyncResponse:
        return self.containers(context).exec_sync(request)

    @rpc
    def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.ReopenContainerLogResponse:
        self.containers(context).reopen_log(request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    @rpc
    def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ContainerStatsResponse:
        return api_pb2.ContainerStatsResponse(
            stats=self.containers(context).stats(request.container_id)
        )

    @rpc
    def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListContainerStatsResponse:
        return self.containers(context).list_stats(request)
