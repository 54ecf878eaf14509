"""The CRI RuntimeService.

Implemented so far: Version, Status, RuntimeConfig, UpdateRuntimeConfig, the pod
sandbox family (RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
ListPodSandbox: sandbox.py), the container family (StartContainer, StopContainer,
RemoveContainer: containers.py; CreateContainer: container_create.py; ContainerStatus,
ListContainers: container_status.py; ContainerStats, ListContainerStats:
container_stats.py; ExecSync, ReopenContainerLog: container_exec.py;
UpdateContainerResources: container_update.py), PodSandboxStats and
ListPodSandboxStats (sandbox_stats.py) and GetContainerEvents (events.py), when the
service is given a `Node`, and Exec, Attach and PortForward (streaming.py) when it
is also given a streaming server. The RPCs not served answer UNIMPLEMENTED (the generated
base class does that), which CRI clients understand.

`close()` ends what outlives a call (the event streams and their threads); the server
calls it on shutdown, before it stops.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterator

import grpc

from cri.api import api_pb2, api_pb2_grpc
from cri.errors import InvalidArgument, Unimplemented, rpc, rpc_stream
from cri.node import Node
from cri.runtime_service.container_create import create_container
from cri.runtime_service.container_exec import exec_sync, reopen_container_log
from cri.runtime_service.container_stats import container_stats, list_container_stats
from cri.runtime_service.container_status import container_status, list_containers
from cri.runtime_service.container_update import update_resources
from cri.runtime_service.containers import Containers
from cri.runtime_service.events import ContainerEvents
from cri.runtime_service.sandbox import Sandboxes
from cri.runtime_service.sandbox_stats import SandboxStats
from cri.runtime_service.streaming import Streaming
from cri.store import NotFound
from cri.streaming.server import StreamingServer

RUNTIME_NAME = "kubeling"
RUNTIME_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"
# The CRI version this server speaks (k8s.io/cri-api's, see cri/api/api.proto).
CRI_VERSION = "0.1.0"


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(
        self, node: Node | None = None, streaming_server: StreamingServer | None = None
    ) -> None:
        self._lock = threading.Lock()
        self.pod_cidr = ""
        self.node = node
        self._containers = None
        self._sandboxes = None
        self._sandbox_stats = None
        self._events = None
        if node is not None:
            self._events = ContainerEvents(
                supervisor=node.supervisor,
                sandbox_status=self._sandbox_status,
                container_statuses=self._container_statuses,
                refresh=self._refresh,
                refresh_all=self._refresh_all,
            )
            self._containers = Containers(node, publish=self._events.publish)
            self._sandboxes = Sandboxes(
                node,
                stop_containers=self._containers.stop_sandbox,
                remove_containers=self._containers.remove_sandbox,
                publish=self._events.publish,
            )
            self._sandbox_stats = SandboxStats(node, self._containers)
        self._streaming = None
        if node is not None and streaming_server is not None:
            self._streaming = Streaming(node, streaming_server)

    def close(self) -> None:
        """End the event streams (UNAVAILABLE) and stop their threads; idempotent."""
        if self._events is not None:
            self._events.close()

    def sandboxes(self, context: grpc.ServicerContext) -> Sandboxes:
        if self._sandboxes is None:
            raise Unimplemented("this server runs no pods")
        return self._sandboxes

    def containers(self, context: grpc.ServicerContext) -> Containers:
        if self._containers is None:
            raise Unimplemented("this server runs no containers")
        return self._containers

    def streaming(self, context: grpc.ServicerContext) -> Streaming:
        if self._streaming is None:
            raise Unimplemented("this server has no streaming server")
        return self._streaming

    def sandbox_stats(self, context: grpc.ServicerContext) -> SandboxStats:
        if self._sandbox_stats is None:
            raise Unimplemented("this server runs no pods")
        return self._sandbox_stats

    def events(self, context: grpc.ServicerContext) -> ContainerEvents:
        if self._events is None:
            raise Unimplemented("this server runs no containers")
        return self._events

    def _refresh(self, container_id: str) -> None:
        if self._containers is not None:
            self._containers.refresh(container_id)

    def _refresh_all(self) -> None:
        if self._containers is not None:
            self._containers.refresh_all()

    def _sandbox_status(self, sandbox_id: str) -> api_pb2.PodSandboxStatus | None:
        """The sandbox's status for an event, None once it is gone."""
        if self._sandboxes is None:
            return None
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)
        try:
            return self._sandboxes.status(request).status
        except NotFound:
            return None

    def _container_statuses(self, sandbox_id: str) -> list[api_pb2.ContainerStatus]:
        """The statuses of the sandbox's containers for an event."""
        if self._containers is None:
            return []
        listed = self._containers.node.store.list_containers(
            api_pb2.ContainerFilter(pod_sandbox_id=sandbox_id)
        )
        statuses = []
        for container in listed:
            with contextlib.suppress(NotFound):
                request = api_pb2.ContainerStatusRequest(container_id=container.id)
                statuses.append(container_status(self._containers, request).status)
        return statuses

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

    # -- containers (containers.py, container_*.py) ---------------------------------------

    @rpc
    def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: grpc.ServicerContext
    ) -> api_pb2.CreateContainerResponse:
        return api_pb2.CreateContainerResponse(
            container_id=create_container(self.containers(context), request)
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
        return list_containers(self.containers(context), request)

    @rpc
    def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.ContainerStatusResponse:
        return container_status(self.containers(context), request)

    @rpc
    def ExecSync(
        self, request: api_pb2.ExecSyncRequest, context: grpc.ServicerContext
    ) -> api_pb2.ExecSyncResponse:
        return exec_sync(self.containers(context), request)

    @rpc
    def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.ReopenContainerLogResponse:
        reopen_container_log(self.containers(context), request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    @rpc
    def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ContainerStatsResponse:
        return api_pb2.ContainerStatsResponse(
            stats=container_stats(self.containers(context), request.container_id)
        )

    @rpc
    def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListContainerStatsResponse:
        return list_container_stats(self.containers(context), request)

    @rpc
    def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.UpdateContainerResourcesResponse:
        update_resources(self.containers(context), request)
        return api_pb2.UpdateContainerResourcesResponse()

    # -- pod sandbox stats (sandbox_stats.py) ---------------------------------------------

    @rpc
    def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.PodSandboxStatsResponse:
        stats = self.sandbox_stats(context).stats(request.pod_sandbox_id)
        return api_pb2.PodSandboxStatsResponse(stats=stats)

    @rpc
    def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodSandboxStatsResponse:
        return self.sandbox_stats(context).list_stats(request)

    # -- events (events.py) ---------------------------------------------------------------

    @rpc_stream
    def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        yield from self.events(context).stream(context)

    # -- streaming (streaming.py) ---------------------------------------------------------

    @rpc
    def Exec(
        self, request: api_pb2.ExecRequest, context: grpc.ServicerContext
    ) -> api_pb2.ExecResponse:
        return api_pb2.ExecResponse(url=self.streaming(context).exec(request))

    @rpc
    def Attach(
        self, request: api_pb2.AttachRequest, context: grpc.ServicerContext
    ) -> api_pb2.AttachResponse:
        return api_pb2.AttachResponse(url=self.streaming(context).attach(request))

    @rpc
    def PortForward(
        self, request: api_pb2.PortForwardRequest, context: grpc.ServicerContext
    ) -> api_pb2.PortForwardResponse:
        return api_pb2.PortForwardResponse(url=self.streaming(context).port_forward(request))
