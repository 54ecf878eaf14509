"""A new user namespace: container root is host uid/gid 100000 (a 65536-id map).

The container's processes reach the rootfs as host uid 100000: the rootfs and
every directory above it must be searchable by others, which pytest's 0700
base temp directory is not, so this module builds its own rootfs under /tmp.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import busybox_rootfs

pytestmark = pytest.mark.root

HOST_ID = 100000
SIZE = 65536


@pytest.fixture(scope="module")
def open_rootfs() -> Iterator[Path]:
    """A busybox rootfs whose every parent directory others may search."""
    top = Path(tempfile.mkdtemp(prefix="kubeling-userns-", dir="/tmp"))
    try:
        top.chmod(0o755)
        yield Path(busybox_rootfs(str(top / "rootfs")))
    finally:
        shutil.rmtree(top)


@pytest.fixture
def userns_bundle(make_bundle: Any, open_rootfs: Path) -> Any:
    def make(args: list[str], **maps: Any) -> tuple[Path, str]:
        def edit(config: dict[str, Any]) -> None:
            config["root"]["path"] = str(open_rootfs)
            linux = config["linux"]
            linux["namespaces"].append({"type": "user"})
            linux["uidMappings"] = maps.get(
                "uid", [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]
            )
            linux["gidMappings"] = maps.get(
                "gid", [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]
            )
            if "user" in maps:
                config["process"]["user"] = maps["user"]

        return make_bundle(args, edit=edit)

    return make


def test_id_maps_inside(userns_bundle: Any, runtime_cli: Any):
    bundle, cid = userns_bundle(
        ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                     "grep -E '^Cap(Eff|Bnd):' /proc/self/status"]
    )  # fmt: skip
    out = runtime_cli("run", "--bundle", str(bundle), cid).stdout.splitlines()
    assert [line.split() for line in out[:2]] == [["0", str(HOST_ID), str(SIZE)]] * 2
    assert out[2:4] == ["0", "0"]
    # The configured capabilities, held in (and only over) the user namespace.
    assert [line.split()[1] for line in out[4:]] == ["0000000020000420"] * 2


def test_container_root_is_host_uid_100000(userns_bundle: Any, runtime_cli: Any):
    bundle, cid = userns_bundle(["sleep", "1000"])
    result = runtime_cli.detached("create", "-b", str(bundle), cid, check=False)
    assert result.returncode == 0, result.stderr
    runtime_cli("start", cid)
    pid = runtime_cli.state(cid)["pid"]

    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    assert fields["Uid"].split() == [str(HOST_ID)] * 4
    assert fields["Gid"].split() == [str(HOST_ID)] * 4
    st = os.stat(f"/proc/{pid}")
    assert (st.st_uid, st.st_gid) == (HOST_ID, HOST_ID)
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split() == ["0", str(HOST_ID), str(SIZE)]

    runtime_cli("delete", "--force", cid)
    assert not os.path.exists(f"/proc/{pid}/status")


def test_non_root_user_inside_maps_to_offset(userns_bundle: Any, runtime_cli: Any):
    bundle, cid = userns_bundle(
        ["sh", "-c", "id -u; id -g; touch /dev/shm/f; stat -c '%u:%g' /dev/shm/f"],
        user={"uid": 1000, "gid": 1000},
    )
    out = runtime_cli("run", "--bundle", str(bundle), cid).stdout.split()
    assert out == ["1000", "1000", "1000:1000"]


def test_unmapped_files_show_as_nobody(userns_bundle: Any, runtime_cli: Any):
    bundle, cid = userns_bundle(["stat", "-c", "%u:%g", "/bin/busybox"])
    # The rootfs is owned by host root, which has no id inside: the overflow ids.
    out = runtime_cli("run", "--bundle", str(bundle), cid).stdout.strip()
    with open("/proc/sys/kernel/overflowuid") as u, open("/proc/sys/kernel/overflowgid") as g:
        assert out == f"{u.read().strip()}:{g.read().strip()}"


def test_devices_are_usable_in_a_user_namespace(userns_bundle: Any, runtime_cli: Any):
    # mknod is refused in a user namespace: the host's nodes are bound instead.
    bundle, cid = userns_bundle(
        ["sh", "-c", "echo hi > /dev/null && head -c 3 /dev/zero | wc -c; "
                     "stat -c '%t,%T' /dev/null /dev/urandom"]
    )  # fmt: skip
    out = runtime_cli("run", "--bundle", str(bundle), cid).stdout.split()
    assert out == ["3", "1,3", "1,9"]


def test_mapping_without_a_user_namespace_is_refused(make_bundle: Any, runtime_cli: Any):
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 1}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 1}]

    bundle, cid = make_bundle(["true"], edit=edit)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode != 0
    assert "uidMappings" in result.stderr
    assert not os.path.exists(runtime_cli.root / cid)
