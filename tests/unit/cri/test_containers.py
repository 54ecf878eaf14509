"""The pure steps of cri/runtime_service/containers.py (stop signals) and
container_create.py (device stat, image refs and the metadata check); the RPCs
themselves are in tests/integration/cri/test_containers.py."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cri.api import api_pb2
from cri.errors import InvalidArgument
from cri.runtime_service.container_create import check_metadata, image_ref, stat_device
from cri.runtime_service.containers import parse_signal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", signal.SIGTERM),
        ("SIGQUIT", signal.SIGQUIT),
        ("quit", signal.SIGQUIT),
        ("SIGWINCH", signal.SIGWINCH),
        ("9", 9),
        ("SIGNOPE", signal.SIGTERM),
    ],
)
def test_parse_signal(text: str, expected: int) -> None:
    assert parse_signal(text) == expected


def test_stat_device_reads_dev_null() -> None:
    info = stat_device("/dev/null")
    assert (info.type, info.major, info.minor) == ("c", 1, 3)


def test_stat_device_refuses_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError, match="not a device"):
        stat_device(str(path))


def test_image_ref_prefers_the_repo_digest() -> None:
    image: Any = SimpleNamespace(id="sha256:" + "a" * 64, repo_digests=("r/x@sha256:" + "b" * 64,))
    assert image_ref(image) == "r/x@sha256:" + "b" * 64
    bare: Any = SimpleNamespace(id="sha256:" + "a" * 64, repo_digests=())
    assert image_ref(bare) == "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (api_pb2.ContainerConfig(), "config.metadata"),
        (api_pb2.ContainerConfig(metadata={"attempt": 1}), "config.metadata.name"),
    ],
)
def test_check_metadata_names_the_field(config: api_pb2.ContainerConfig, field: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{field}: required"):
        check_metadata(config)
