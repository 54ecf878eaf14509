"""Namespace files with recording syscalls: the calls, their order, that unshare and
setns run on a thread of their own, and the clean-up on failure."""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cri.network import NetnsError
from cri.network.netns import (
    THREAD_NETNS,
    create_netns,
    ensure_shared_dir,
    is_netns,
    remove_netns,
    run_in_thread,
    socket_in,
)
from runtime.syscalls import CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_REC, MS_SHARED
from runtime.testing import Call, MountCall, RecordingSyscalls


@dataclass
class ThreadRecordingSyscalls(RecordingSyscalls):
    """Also notes which thread made each namespace call."""

    threads: dict[str, int] = field(default_factory=dict)

    def unshare(self, flags: int) -> None:
        self.threads["unshare"] = threading.get_ident()
        super().unshare(flags)

    def setns(self, fd: int, nstype: int) -> None:
        self.threads["setns"] = threading.get_ident()
        super().setns(fd, nstype)


def test_create_netns(tmp_path: Path) -> None:
    syscalls = ThreadRecordingSyscalls()
    path = create_netns(tmp_path / "netns", "sb1", syscalls)
    assert path == tmp_path / "netns/sb1"
    assert path.is_file()
    assert syscalls.calls == [
        MountCall("", str(tmp_path / "netns"), "", MS_SHARED | MS_REC, ""),
        Call("unshare", (CLONE_NEWNET,)),
        MountCall(THREAD_NETNS, str(path), "", MS_BIND, ""),
    ]
    assert syscalls.threads["unshare"] != threading.get_ident()


def test_directory_not_yet_a_mount_point_is_bound_onto_itself(tmp_path: Path) -> None:
    syscalls = RecordingSyscalls()
    syscalls.fail("mount", nth=1, err=errno.EINVAL)
    ensure_shared_dir(tmp_path / "d", syscalls)
    target = str(tmp_path / "d")
    assert syscalls.mounts == [
        MountCall(target, target, "", MS_BIND | MS_REC, ""),
        MountCall("", target, "", MS_SHARED | MS_REC, ""),
    ]


def test_shared_dir_other_errors(tmp_path: Path) -> None:
    syscalls = RecordingSyscalls()
    syscalls.fail("mount", nth=1, err=errno.EPERM)
    with pytest.raises(NetnsError, match="make .* shared: EPERM"):
        ensure_shared_dir(tmp_path, syscalls)


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "sb1").write_text("")
    with pytest.raises(NetnsError, match="sb1: exists"):
        create_netns(tmp_path, "sb1", RecordingSyscalls())


@pytest.mark.parametrize(("failing", "nth"), [("unshare", 1), ("mount", 2)])
def test_failed_create_leaves_no_file(tmp_path: Path, failing: str, nth: int) -> None:
    syscalls = RecordingSyscalls()
    syscalls.fail(failing, nth=nth, err=errno.EPERM)
    with pytest.raises(NetnsError, match=f"create netns .*sb1: {failing}.*: EPERM"):
        create_netns(tmp_path, "sb1", syscalls)
    assert not (tmp_path / "sb1").exists()


def test_remove_netns(tmp_path: Path) -> None:
    path = tmp_path / "sb1"
    path.write_text("")
    syscalls = RecordingSyscalls()
    remove_netns(path, syscalls)
    assert syscalls.calls == [Call("umount", (str(path), MNT_DETACH))]
    assert not path.exists()


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOENT])
def test_remove_is_idempotent(tmp_path: Path, err: int) -> None:
    syscalls = RecordingSyscalls()
    syscalls.fail("umount", err=err)
    remove_netns(tmp_path / "gone", syscalls)


def test_remove_reports_other_errors(tmp_path: Path) -> None:
    syscalls = RecordingSyscalls()
    syscalls.fail("umount", err=errno.EBUSY)
    (tmp_path / "sb").write_text("")
    with pytest.raises(NetnsError, match="remove netns .*sb: umount: EBUSY"):
        remove_netns(tmp_path / "sb", syscalls)


def test_socket_in_enters_on_another_thread(tmp_path: Path) -> None:
    ns = tmp_path / "ns"
    ns.write_text("")
    syscalls = ThreadRecordingSyscalls()
    with socket_in(ns, socket.AF_UNIX, socket.SOCK_DGRAM, syscalls=syscalls) as sock:
        assert sock.family == socket.AF_UNIX
    assert syscalls.calls == [Call("setns", (CLONE_NEWNET,))]
    assert syscalls.threads["setns"] != threading.get_ident()


def test_socket_in_errors(tmp_path: Path) -> None:
    with pytest.raises(NetnsError, match="open netns .*missing"):
        socket_in(tmp_path / "missing", syscalls=RecordingSyscalls())
    (tmp_path / "ns").write_text("")
    syscalls = RecordingSyscalls()
    syscalls.fail("setns", err=errno.EINVAL)
    with pytest.raises(NetnsError, match="enter netns .*ns: EINVAL"):
        socket_in(tmp_path / "ns", syscalls=syscalls)


def test_run_in_thread() -> None:
    assert run_in_thread(threading.get_ident) != threading.get_ident()

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        run_in_thread(boom)


def test_is_netns(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    assert is_netns(Path(THREAD_NETNS))
    assert not is_netns(tmp_path / "plain")
    assert not is_netns(tmp_path / "missing")
