"""What a container sees of the machine: its own pid, UTS and network namespaces,
runc's default mounts, masked and read-only paths, a read-only root, the default
device nodes, sysctls, and a network namespace joined by path.

Most tests `run` a busybox shell script in the foreground and read its stdout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import DEFAULT_MASKED_PATHS

pytestmark = pytest.mark.root


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def test_process_is_pid_1(sh: Any):
    # `read` is a builtin: /proc/self is the shell itself.
    result = sh("echo $$; read pid rest < /proc/self/stat; echo $pid; ls /proc | grep -c '^[0-9]'")
    assert lines(result)[:2] == ["1", "1"]
    # Only sh and the ls|grep pipeline: no host process is visible.
    assert int(lines(result)[2]) <= 4


def test_hostname_and_domainname_from_config(sh: Any):
    def names(config: dict[str, Any]) -> None:
        config["hostname"] = "box-7"
        config["domainname"] = "example.test"

    result = sh("hostname; cat /proc/sys/kernel/domainname", names)
    assert lines(result) == ["box-7", "example.test"]
    assert os.uname().nodename != "box-7"


def test_default_mounts(sh: Any):
    mounts = [line.split() for line in lines(sh("cat /proc/mounts"))]
    by_target = {m[1]: m for m in mounts}
    assert by_target["/proc"][2] == "proc"
    assert by_target["/dev"][2] == "tmpfs"
    assert by_target["/dev/pts"][2] == "devpts"
    assert "newinstance" in by_target["/dev/pts"][3] or "ptmxmode=666" in by_target["/dev/pts"][3]
    assert by_target["/dev/shm"][2] == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= set(by_target["/dev/shm"][3].split(","))
    assert by_target["/dev/mqueue"][2] == "mqueue"
    assert by_target["/sys"][2] == "sysfs"
    assert "ro" in by_target["/sys"][3].split(",")
    assert "ro" in by_target["/"][3].split(",")
    # Nothing of the host's mount table leaks in.
    with open("/proc/self/mounts") as f:
        host_only = {line.split()[1] for line in f} - set(by_target)
    assert not any(m[1] in host_only for m in mounts)


def test_masked_paths(sh: Any):
    files = [p for p in DEFAULT_MASKED_PATHS if os.path.isfile(p)]
    dirs = [p for p in DEFAULT_MASKED_PATHS if os.path.isdir(p) and os.listdir(p)]
    if not files or not dirs:
        pytest.skip("no masked file or non-empty masked directory on this host")
    script = "; ".join(
        [f"stat -c '%t,%T' {p}; wc -c < {p}" for p in files]
        + [f"ls -A {p} | wc -l" for p in dirs]
        + [f"touch {dirs[0]}/x 2>/dev/null && echo writable || echo refused"]
    )
    out = lines(sh(script))
    for index, _ in enumerate(files):
        # /dev/null bound over the file: a char device 1,3 that reads empty.
        assert out[2 * index : 2 * index + 2] == ["1,3", "0"]
    assert out[2 * len(files) : -1] == ["0"] * len(dirs)
    assert out[-1] == "refused"


def test_proc_kcore_is_not_readable(sh: Any):
    out = sh("cat /proc/kcore 2>/dev/null | wc -c").stdout.strip()
    assert out == "0"


def test_readonly_paths(sh: Any):
    def protect_shm(config: dict[str, Any]) -> None:
        config["linux"]["readonlyPaths"].append("/dev/shm")

    result = sh(
        "echo 1 > /proc/sys/kernel/shm_rmid_forced; echo rc=$?; "
        "touch /dev/shm/x; echo rc=$?; cat /proc/sys/kernel/ostype",
        protect_shm,
    )
    assert lines(result) == ["rc=1", "rc=1", "Linux"]
    assert result.stderr.count("Read-only file system") == 2


def test_readonly_root(sh: Any):
    result = sh("touch /x; echo rc=$?; mkdir /bin/y; echo rc=$?; touch /dev/shm/ok && echo ok")
    assert lines(result) == ["rc=1", "rc=1", "ok"]
    assert "Read-only file system" in result.stderr


def test_writable_root_when_not_readonly(sh: Any, busybox: Path):
    def writable(config: dict[str, Any]) -> None:
        config["root"]["readonly"] = False

    target = busybox / "root" / "written-by-test"
    try:
        sh("touch /root/written-by-test", writable)
        assert target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_default_devices(sh: Any):
    devices = ["null 1,3", "zero 1,5", "full 1,7", "random 1,8", "urandom 1,9", "tty 5,0"]
    script = "; ".join(f"stat -c '%n %F %t,%T %a' /dev/{d.split()[0]}" for d in devices)
    out = lines(sh(script + "; echo x > /dev/null && head -c 4 /dev/zero | wc -c"))
    for line, device in zip(out, devices, strict=False):
        name, number = device.split()
        assert line == f"/dev/{name} character special file {number} 666"
    assert out[-1] == "4"
    assert lines(sh("for l in ptmx fd stdin; do readlink /dev/$l; done")) == [
        "pts/ptmx", "/proc/self/fd", "/proc/self/fd/0",
    ]  # fmt: skip


def test_devices_cgroup_allows_only_configured_devices(sh: Any):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse (10:229), a device anyone may open")

    def add_fuse(config: dict[str, Any]) -> None:
        config["linux"]["devices"] = [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600}
        ]

    def add_mknod(config: dict[str, Any]) -> None:
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind].append("CAP_MKNOD")

    # A node outside the allow list can be made (mknod is allowed) but not opened...
    script = "mknod /dev/f c 10 229; echo rc=$?; exec 3< /dev/f; echo rc=$?"
    result = sh(script, add_mknod, check=False)
    assert lines(result) == ["rc=0"]
    assert "Operation not permitted" in result.stderr
    # ...while a configured device is created and allowed.
    result = sh("stat -c '%t,%T %a' /dev/fuse; exec 3< /dev/fuse && echo opened", add_fuse)
    assert lines(result) == ["a,e5 600", "opened"]


def test_network_namespace_has_only_loopback_up(sh: Any):
    out = lines(sh("ls /sys/class/net; cat /sys/class/net/lo/flags; ip -o link | wc -l"))
    assert out[0] == "lo"
    assert int(out[1], 16) & 0x1  # IFF_UP
    assert out[2] == "1"


def test_ipc_and_uts_namespaces_are_new(sh: Any):
    out = lines(sh("for n in ipc uts net pid mnt; do readlink /proc/self/ns/$n; done"))
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "uts", "net", "pid", "mnt")]
    assert all(inside != outside for inside, outside in zip(out, host, strict=True))


def test_join_network_namespace_by_path(make_bundle: Any, runtime_cli: Any, sh: Any, busybox: Path):
    bundle, first = make_bundle(["sleep", "1000"])
    runtime_cli.detached("run", "-d", "-b", str(bundle), first)
    pid = runtime_cli.state(first)["pid"]
    netns = f"/proc/{pid}/ns/net"
    # Give the first container's namespace something to recognise it by.
    subprocess.run(
        [
            "nsenter",
            f"--net={netns}",
            str(busybox / "bin" / "busybox"),
            "ip",
            "addr",
            "add",
            "10.254.1.1/32",
            "dev",
            "lo",
        ],
        check=True,
    )

    def join(config: dict[str, Any]) -> None:
        for namespace in config["linux"]["namespaces"]:
            if namespace["type"] == "network":
                namespace["path"] = netns

    out = lines(sh("readlink /proc/self/ns/net; ip -o addr show dev lo", join))
    assert out[0] == os.readlink(netns)
    assert out[0] != os.readlink("/proc/self/ns/net")
    assert any("10.254.1.1/32" in line for line in out[1:])


def test_sysctls(sh: Any):
    def sysctls(config: dict[str, Any]) -> None:
        config["linux"]["sysctl"] = {
            "net.ipv4.ip_forward": "1",
            "kernel.shmmax": "123456789",
        }

    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_forward = f.read()
    out = lines(sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax", sysctls))
    assert out == ["1", "123456789"]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_forward


def test_non_namespaced_sysctl_is_refused(make_bundle: Any, runtime_cli: Any):
    def sysctls(config: dict[str, Any]) -> None:
        config["linux"]["sysctl"] = {"vm.swappiness": "10"}

    bundle, cid = make_bundle(["true"], edit=sysctls)
    result = runtime_cli("run", "--bundle", str(bundle), cid, check=False)
    assert result.returncode != 0
    assert "linux.sysctl.vm.swappiness" in result.stderr
