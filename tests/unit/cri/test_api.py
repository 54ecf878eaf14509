"""The CRI v1 wire definition (cri/api): stubs up to date, wire facts, stubs usable over gRPC.

The byte strings below are written out by hand from the protobuf encoding rules
(key = field_number << 3 | wire_type; wire type 0 = varint, 2 = length-delimited), not
produced by the library under test, so a wrong field number or type in api.proto fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from cri.api import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")

VARINT = 0
LEN = 2


def varint(value: int) -> bytes:
    """Base-128 varint; negative int32/int64 values are encoded as 64-bit two's complement."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(field_number: int, wire_type: int) -> bytes:
    return varint(field_number << 3 | wire_type)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return key(field_number, LEN) + varint(len(payload)) + payload


def integer(field_number: int, value: int) -> bytes:
    return key(field_number, VARINT) + varint(value)


# --- the committed stubs are what scripts/generate-cri-api produces -----------------------


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "generate-cri-api"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stale = [
        name
        for name in GENERATED
        if (tmp_path / name).read_bytes() != (REPO / "cri" / "api" / name).read_bytes()
    ]
    assert not stale, f"run scripts/generate-cri-api and commit the result: {stale} differ"


def test_grpc_stubs_import_messages_as_a_package() -> None:
    source = (REPO / "cri" / "api" / "api_pb2_grpc.py").read_text()
    assert "\nfrom cri.api import api_pb2 as api__pb2\n" in source
    assert "\nimport api_pb2" not in source


# --- hand-computed wire encodings ----------------------------------------------------------


def test_pod_sandbox_config_metadata_encoding() -> None:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(
            name="nginx", uid="6f1c", namespace="default", attempt=2
        ),
        hostname="web-0",
        log_directory="/var/log/pods/x",
    )
    # PodSandboxMetadata: name=1, uid=2, namespace=3 (strings), attempt=4 (uint32).
    metadata = b"\x0a\x05nginx" + b"\x12\x046f1c" + b"\x1a\x07default" + b"\x20\x02"
    assert len(metadata) == 24
    # PodSandboxConfig: metadata=1, hostname=2, log_directory=3.
    expected = b"\x0a\x18" + metadata + b"\x12\x05web-0" + b"\x1a\x0f/var/log/pods/x"
    assert config.SerializeToString() == expected
    # Same bytes through the helpers, and back.
    assert expected == (
        length_delimited(
            1,
            length_delimited(1, b"nginx")
            + length_delimited(2, b"6f1c")
            + length_delimited(3, b"default")
            + integer(4, 2),
        )
        + length_delimited(2, b"web-0")
        + length_delimited(3, b"/var/log/pods/x")
    )
    parsed = api_pb2.PodSandboxConfig.FromString(expected)
    assert parsed.metadata.namespace == "default"
    assert parsed.metadata.attempt == 2


def test_container_config_image_encoding() -> None:
    config = api_pb2.ContainerConfig(
        image=api_pb2.ImageSpec(image="busybox:1.36", user_specified_image="busybox")
    )
    # ImageSpec.image=1; user_specified_image=18 -> key 18 << 3 | 2 = 146 = varint 92 01.
    image_spec = b"\x0a\x0cbusybox:1.36" + b"\x92\x01\x07busybox"
    # ContainerConfig.image=2.
    assert config.SerializeToString() == b"\x12" + bytes([len(image_spec)]) + image_spec
    assert key(18, LEN) == b"\x92\x01"


def test_container_config_stop_signal_and_cdi_devices() -> None:
    config = api_pb2.ContainerConfig(
        CDI_devices=[api_pb2.CDIDevice(name="vendor.com/gpu=0")],
        stop_signal=api_pb2.SIGTERM,
    )
    assert api_pb2.SIGTERM == 23
    # CDI_devices=17 (key 8a 01), stop_signal=18 (enum, key 90 01).
    expected = b"\x8a\x01\x12" + b"\x0a\x10vendor.com/gpu=0" + b"\x90\x01\x17"
    assert config.SerializeToString() == expected


def test_linux_container_resources_encoding() -> None:
    resources = api_pb2.LinuxContainerResources(
        cpu_period=100_000,
        cpu_quota=50_000,
        cpu_shares=512,
        memory_limit_in_bytes=256 * 1024 * 1024,
        oom_score_adj=-997,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=4 * 2 * 1024 * 1024)],
        memory_swap_limit_in_bytes=512 * 1024 * 1024,
    )
    expected = (
        b"\x08\xa0\x8d\x06"  # cpu_period=1: 100000
        + b"\x10\xd0\x86\x03"  # cpu_quota=2: 50000
        + b"\x18\x80\x04"  # cpu_shares=3: 512
        + b"\x20\x80\x80\x80\x80\x01"  # memory_limit_in_bytes=4: 2**28
        # oom_score_adj=5 is int64: -997 takes ten bytes (two's complement), not zigzag.
        + b"\x28\x9b\xf8\xff\xff\xff\xff\xff\xff\xff\x01"
        + b"\x32\x030-1"  # cpuset_cpus=6
        + b"\x3a\x010"  # cpuset_mems=7
        # hugepage_limits=8: HugepageLimit{page_size=1: "2MB", limit=2: 8 MiB}
        + b"\x42\x0a"
        + b"\x0a\x032MB"
        + b"\x10\x80\x80\x80\x04"
        + b"\x50\x80\x80\x80\x80\x02"  # memory_swap_limit_in_bytes=10: 2**29
    )
    assert resources.SerializeToString() == expected
    assert varint(-997) == b"\x9b\xf8\xff\xff\xff\xff\xff\xff\xff\x01"

    # unified=9 is map<string, string>: entries {key=1, value=2}, each under key 4a.
    unified = api_pb2.LinuxContainerResources(unified={"memory.high": "1G"})
    entry = b"\x0a\x0bmemory.high" + b"\x12\x021G"
    assert unified.SerializeToString() == b"\x4a" + bytes([len(entry)]) + entry


def test_container_status_response_state_encoding() -> None:
    response = api_pb2.ContainerStatusResponse(
        status=api_pb2.ContainerStatus(
            id="c1",
            state=api_pb2.CONTAINER_EXITED,
            finished_at=1_700_000_000_000_000_000,
            exit_code=137,
            reason="OOMKilled",
        )
    )
    assert api_pb2.CONTAINER_EXITED == 2
    status = (
        b"\x0a\x02c1"  # id=1
        + b"\x18\x02"  # state=3: CONTAINER_EXITED
        + b"\x30"  # finished_at=6 (int64 nanoseconds)
        + varint(1_700_000_000_000_000_000)
        + b"\x38\x89\x01"  # exit_code=7: 137
        + b"\x52\x09OOMKilled"  # reason=10
    )
    expected = b"\x0a" + bytes([len(status)]) + status
    assert response.SerializeToString() == expected
    parsed = api_pb2.ContainerStatusResponse.FromString(expected)
    assert parsed.status.state == api_pb2.CONTAINER_EXITED
    assert parsed.status.exit_code == 137


def test_exec_and_attach_number_stdin_differently() -> None:
    # ExecRequest: tty=3, stdin=4. AttachRequest: stdin=2, tty=3.
    assert api_pb2.ExecRequest(stdin=True).SerializeToString() == b"\x20\x01"
    assert api_pb2.AttachRequest(stdin=True).SerializeToString() == b"\x10\x01"
    assert api_pb2.ExecRequest(tty=True).SerializeToString() == b"\x18\x01"
    assert api_pb2.AttachRequest(tty=True).SerializeToString() == b"\x18\x01"


def test_sandbox_security_context_out_of_order_numbers() -> None:
    context = api_pb2.LinuxSandboxSecurityContext(
        run_as_user=api_pb2.Int64Value(value=1000),
        run_as_group=api_pb2.Int64Value(value=3000),
        supplemental_groups_policy=api_pb2.Strict,
    )
    # run_as_user=3, run_as_group=8, supplemental_groups_policy=11 (enum Strict=1).
    expected = b"\x1a\x03\x08\xe8\x07" + b"\x42\x03\x08\xb8\x17" + b"\x58\x01"
    assert context.SerializeToString() == expected


def test_package_enums_and_counts() -> None:
    file = api_pb2.DESCRIPTOR
    assert file.package == "runtime.v1"
    assert file.GetOptions().go_package == "k8s.io/cri-api/pkg/apis/runtime/v1"
    assert len(file.message_types_by_name) == 170
    assert sorted(file.enum_types_by_name) == [
        "CgroupDriver",
        "ContainerEventType",
        "ContainerState",
        "MetricType",
        "MountPropagation",
        "NamespaceMode",
        "PodSandboxState",
        "Protocol",
        "Signal",
        "SupplementalGroupsPolicy",
    ]
    assert api_pb2.CGROUPFS == 1
    assert api_pb2.CONTAINER_DELETED_EVENT == 3
    assert api_pb2.SIGRTMAX == 65
    assert api_pb2.SecurityProfile.Localhost == 2


# --- services ------------------------------------------------------------------------------

RUNTIME_SERVICE_RPCS = [
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
]
IMAGE_SERVICE_RPCS = [
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
]
SERVER_STREAMING = {
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "GetContainerEvents",
    "StreamPodSandboxMetrics",
    "StreamImages",
}


@pytest.mark.parametrize(
    ("service_name", "rpcs"),
    [("RuntimeService", RUNTIME_SERVICE_RPCS), ("ImageService", IMAGE_SERVICE_RPCS)],
)
def test_service_has_every_rpc(service_name: str, rpcs: list[str]) -> None:
    service = api_pb2.DESCRIPTOR.services_by_name[service_name]
    assert service.full_name == f"runtime.v1.{service_name}"
    assert [method.name for method in service.methods] == rpcs
    for method in service.methods:
        assert not method.client_streaming, method.name
        assert method.server_streaming == (method.name in SERVER_STREAMING), method.name


def test_rpc_message_types_follow_the_naming_rule_except_get_container_events() -> None:
    for service in api_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            if method.name == "GetContainerEvents":
                assert method.input_type.full_name == "runtime.v1.GetEventsRequest"
                assert method.output_type.full_name == "runtime.v1.ContainerEventResponse"
            else:
                assert method.input_type.full_name == f"runtime.v1.{method.name}Request"
                assert method.output_type.full_name == f"runtime.v1.{method.name}Response"


# --- the generated stubs work end to end over a unix socket -------------------------------


class VersionOnly(api_pb2_grpc.RuntimeServiceServicer):
    def Version(
        self, request: api_pb2.VersionRequest, context: grpc.ServicerContext
    ) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(
            version=request.version,
            runtime_name="kubeling-test",
            runtime_version="0.0.0",
            runtime_api_version="v1",
        )

    def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[api_pb2.ContainerEventResponse]:
        for event_type in (api_pb2.CONTAINER_CREATED_EVENT, api_pb2.CONTAINER_STARTED_EVENT):
            yield api_pb2.ContainerEventResponse(container_id="c1", container_event_type=event_type)


@pytest.fixture
def runtime_channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    socket = tmp_path / "cri.sock"
    assert len(str(socket)) < 108, "unix socket path too long"
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        server = grpc.server(pool)
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(VersionOnly(), server)
        server.add_insecure_port(f"unix://{socket}")
        server.start()
        try:
            with grpc.insecure_channel(f"unix://{socket}") as channel:
                yield channel
        finally:
            server.stop(grace=None).wait()


def test_version_over_unix_socket(runtime_channel: grpc.Channel) -> None:
    stub = api_pb2_grpc.RuntimeServiceStub(runtime_channel)
    response: api_pb2.VersionResponse = stub.Version(
        api_pb2.VersionRequest(version="0.1.0"), timeout=10
    )
    assert response.version == "0.1.0"
    assert response.runtime_name == "kubeling-test"
    assert response.runtime_api_version == "v1"


def test_server_stream_over_unix_socket(runtime_channel: grpc.Channel) -> None:
    stub = api_pb2_grpc.RuntimeServiceStub(runtime_channel)
    events = list(stub.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=10))
    assert [event.container_event_type for event in events] == [
        api_pb2.CONTAINER_CREATED_EVENT,
        api_pb2.CONTAINER_STARTED_EVENT,
    ]


def test_rpc_not_overridden_answers_unimplemented(runtime_channel: grpc.Channel) -> None:
    stub = api_pb2_grpc.RuntimeServiceStub(runtime_channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Status(api_pb2.StatusRequest(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
