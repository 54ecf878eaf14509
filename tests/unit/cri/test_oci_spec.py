"""CRI requests to OCI configs (cri/oci_spec), table by table, against containerd's
behaviour; every spec built here also passes runtime.spec.validate."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cri import oci_spec, seccomp_default
from cri.api import api_pb2
from cri.errors import InvalidArgument, Unimplemented
from cri.oci_spec import HOST, DeviceInfo, HostFacts, SandboxInfo, UserDB
from images.metadata import Image, ImageConfig
from runtime import seccomp as runtime_seccomp
from runtime.capabilities import CAPABILITY_NAMES
from runtime.spec import validate

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
  app:x:1000:1001:App:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken:x:abc:def
"""
GROUP = """\
root:x:0:
daemon:x:1:app
appgroup:x:1001:
app:x:1002:app
audio:x:29:app,nobody
video:x:44:nobody
wheel:x:10:root
"""
USERS = UserDB.parse(PASSWD, GROUP)
HOST_FACTS = HostFacts(machine="x86_64", kernel=(6, 1), cgroup_v2=True, swap=True, hugetlb=True)
DEFAULT_CAPS = list(oci_spec.DEFAULT_CAPABILITIES)
SC = "config.linux.security_context"


def image(**config: Any) -> Image:
    return Image(
        id="sha256:" + "a" * 64,
        repo_tags=("docker.io/library/app:1",),
        repo_digests=(),
        size=0,
        config=ImageConfig(**config),
        layers=(),
        platform="linux/amd64",
        manifest_digest="sha256:" + "b" * 64,
    )


IMAGE = image(entrypoint=("/entry",), cmd=("default-arg",), env=("PATH=/image/bin", "A=1"))


@pytest.fixture
def sandbox(tmp_path: Path) -> SandboxInfo:
    """A sandbox with its own namespaces and files (existing paths: validate checks)."""
    paths = {}
    for name in ("net", "ipc", "uts", "pid", "target-pid", "hostname", "hosts", "resolv", "shm"):
        path = tmp_path / name
        path.touch()
        paths[name] = str(path)
    return SandboxInfo(
        id="sb1",
        name="pod",
        namespace="default",
        uid="pod-uid",
        network_ns=paths["net"],
        ipc_ns=paths["ipc"],
        uts_ns=paths["uts"],
        pid_ns=paths["pid"],
        cgroup_parent="/kubepods/pod-uid",
        hostname="pod-host",
        hostname_path=paths["hostname"],
        hosts_path=paths["hosts"],
        resolv_path=paths["resolv"],
        shm_path=paths["shm"],
        log_directory="/var/log/pods/x",
        container_pid_ns={"other": paths["target-pid"]},
        host=HOST_FACTS,
    )


def config(**kwargs: Any) -> api_pb2.ContainerConfig:
    kwargs.setdefault("metadata", {"name": "app"})
    kwargs.setdefault("image", {"image": "app:1"})
    return api_pb2.ContainerConfig(**kwargs)


def security(**kwargs: Any) -> dict[str, Any]:
    return {"security_context": kwargs}


DEVICES = {
    "/dev/fuse": DeviceInfo("c", 10, 229, 0o666, 0, 0),
    "/dev/loop0": DeviceInfo("b", 7, 0, 0o660, 0, 6),
}


def stat_device(path: str) -> DeviceInfo:
    if path == "/dev/null-ish":
        raise ValueError("not a device")
    try:
        return DEVICES[path]
    except KeyError:
        raise FileNotFoundError(2, "No such file or directory", path) from None


LOCAL_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "comment": "x"}],
    "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
}


def load_seccomp(path: str) -> dict[str, Any]:
    if path == "/profiles/local.json":
        return copy.deepcopy(LOCAL_PROFILE)
    if path == "/profiles/bad.json":
        raise ValueError("Expecting value: line 1 column 1")
    if path == "/profiles/list.json":
        return []  # type: ignore[return-value]
    raise FileNotFoundError(2, "No such file or directory", path)


def build(
    cfg: api_pb2.ContainerConfig,
    sb: SandboxInfo,
    *,
    img: Image = IMAGE,
    users: UserDB = USERS,
    run_as_non_root: bool = False,
) -> dict[str, Any]:
    spec = oci_spec.container_spec(
        container_id="c1",
        config=cfg,
        sandbox=sb,
        image=img,
        rootfs="/run/kubeling/c1/rootfs",
        users=users,
        stat_device=stat_device,
        load_seccomp=load_seccomp,
        run_as_non_root=run_as_non_root,
    )
    validate(copy.deepcopy(spec))
    if "seccomp" in spec["linux"]:
        runtime_seccomp._parse(spec["linux"]["seccomp"])
    return spec


def fails(cfg: api_pb2.ContainerConfig, sb: SandboxInfo, message: str, **kw: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        build(cfg, sb, **kw)
    assert str(info.value) == message


# ---- process: args, env, cwd -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "img", "expected"),
    [
        ([], [], IMAGE, ["/entry", "default-arg"]),
        (["/cmd"], [], IMAGE, ["/cmd"]),  # command drops the image's CMD too
        ([], ["x", "y"], IMAGE, ["/entry", "x", "y"]),
        (["/cmd"], ["x"], IMAGE, ["/cmd", "x"]),
        ([], ["/bin/sh", "-c", "true"], image(cmd=("sleep",)), ["/bin/sh", "-c", "true"]),
        ([], [], image(cmd=("sleep", "1")), ["sleep", "1"]),
        ([], [], image(entrypoint=("",), cmd=("top",)), ["top"]),  # [""] means none
        ([], [], image(entrypoint=("/e", "-v")), ["/e", "-v"]),
    ],
)
def test_command_and_args(
    sandbox: SandboxInfo, command: list[str], args: list[str], img: Image, expected: list[str]
) -> None:
    spec = build(config(command=command, args=args), sandbox, img=img)
    assert spec["process"]["args"] == expected


def test_env_image_first_then_config_overrides(sandbox: SandboxInfo) -> None:
    cfg = config(envs=[{"key": "A", "value": b"2"}, {"key": "B", "value": b"x=y"}])
    env = build(cfg, sandbox)["process"]["env"]
    # PATH: the default replaced in place by the image's; HOSTNAME from the sandbox.
    assert env == ["PATH=/image/bin", "HOSTNAME=pod-host", "A=2", "B=x=y"]


def test_env_default_path_tty_and_duplicates(sandbox: SandboxInfo) -> None:
    img = image(cmd=("sh",), env=("X=1", "HOSTNAME=image", "X=2"))
    cfg = config(tty=True, envs=[{"key": "X", "value": b"3"}, {"key": "E", "value": b""}])
    spec = build(cfg, sandbox, img=img)
    assert spec["process"]["terminal"] is True
    assert spec["process"]["env"] == [
        oci_spec.DEFAULT_PATH_ENV,
        "TERM=xterm",
        "HOSTNAME=image",
        "X=3",
        "E=",
    ]


def test_env_unset_entries_remove_defaults(sandbox: SandboxInfo) -> None:
    img = image(cmd=("sh",), env=("PATH", "NOPE"))
    assert build(config(), sandbox, img=img)["process"]["env"] == ["HOSTNAME=pod-host"]


@pytest.mark.parametrize(
    ("working_dir", "img", "expected"),
    [
        ("/work", IMAGE, "/work"),
        ("", image(cmd=("sh",), working_dir="/srv"), "/srv"),
        ("/override", image(cmd=("sh",), working_dir="/srv"), "/override"),
        ("", IMAGE, "/"),
    ],
)
def test_working_dir(sandbox: SandboxInfo, working_dir: str, img: Image, expected: str) -> None:
    assert build(config(working_dir=working_dir), sandbox, img=img)["process"]["cwd"] == expected


# ---- users -------------------------------------------------------------------------------


def test_userdb_parse() -> None:
    assert USERS.user_by_name("app") == oci_spec.PasswdEntry("app", 1000, 1001)
    assert USERS.user_by_name("broken") == oci_spec.PasswdEntry("broken", 0, 0)
    assert USERS.user_by_name("# a comment") is None
    assert USERS.group_by_name("audio") == oci_spec.GroupEntry("audio", 29, ("app", "nobody"))
    assert USERS.group_by_name("root") == oci_spec.GroupEntry("root", 0, ())
    assert USERS.supplementary_gids("app") == [1, 29]  # not its namesake group "app"
    assert UserDB.parse(None, None) == UserDB(None, None)


@pytest.mark.parametrize(
    ("sc", "image_user", "user"),
    [
        ({}, "", {"uid": 0, "gid": 0, "additionalGids": [0, 10]}),  # root is in wheel
        ({}, "app", {"uid": 1000, "gid": 1001, "additionalGids": [1, 29, 1001]}),
        ({}, "1000", {"uid": 1000, "gid": 1001, "additionalGids": [1, 29, 1001]}),
        ({}, "4242", {"uid": 4242, "gid": 0, "additionalGids": [0]}),  # unknown uid: gid 0
        ({}, "1000:44", {"uid": 1000, "gid": 44, "additionalGids": [1, 29, 44]}),
        ({}, "app:video", {"uid": 1000, "gid": 44, "additionalGids": [1, 29, 44]}),
        ({}, "4242:video", {"uid": 4242, "gid": 44, "additionalGids": [44]}),
        ({}, "app:7", {"uid": 1000, "gid": 7, "additionalGids": [1, 7, 29]}),
        ({}, ":7", {"uid": 0, "gid": 7, "additionalGids": [7, 10]}),
        ({"run_as_user": {"value": 65534}}, "app", {"uid": 65534, "gid": 65534,
                                                    "additionalGids": [29, 44, 65534]}),
        ({"run_as_user": {"value": 0}}, "app", {"uid": 0, "gid": 0, "additionalGids": [0, 10]}),
        ({"run_as_user": {"value": 1000}, "run_as_group": {"value": 5}}, "",
         {"uid": 1000, "gid": 5, "additionalGids": [1, 5, 29]}),
        ({"run_as_username": "nobody"}, "app", {"uid": 65534, "gid": 65534,
                                                "additionalGids": [29, 44, 65534]}),
        ({"run_as_username": "app", "run_as_user": {"value": 7}}, "",
         {"uid": 1000, "gid": 1001, "additionalGids": [1, 29, 1001]}),
        ({"run_as_user": {"value": 1000}, "supplemental_groups": [300, 29]}, "",
         {"uid": 1000, "gid": 1001, "additionalGids": [1, 29, 300, 1001]}),
        ({"run_as_user": {"value": 1000}, "supplemental_groups": [300],
          "supplemental_groups_policy": api_pb2.Strict}, "",
         {"uid": 1000, "gid": 1001, "additionalGids": [300, 1001]}),
        ({"supplemental_groups_policy": api_pb2.Strict}, "", {"uid": 0, "gid": 0}),
    ],
)  # fmt: skip
def test_user_resolution(
    sandbox: SandboxInfo, sc: dict[str, Any], image_user: str, user: dict[str, Any]
) -> None:
    img = image(cmd=("sh",), user=image_user)
    assert build(config(linux=security(**sc)), sandbox, img=img)["process"]["user"] == user


def test_user_without_etc_files(sandbox: SandboxInfo) -> None:
    img = image(cmd=("sh",), user="1000")
    spec = build(config(), sandbox, img=img, users=UserDB())
    assert spec["process"]["user"] == {"uid": 1000, "gid": 0, "additionalGids": [0]}


@pytest.mark.parametrize(
    ("sc", "image_user", "users", "message"),
    [
        ({}, "ghost", USERS,
         "image docker.io/library/app:1: config.User: user 'ghost' not found in the "
         "image's /etc/passwd"),
        ({}, "app", UserDB(), "image docker.io/library/app:1: config.User: user 'app': "
         "the image has no /etc/passwd"),
        ({}, "app:ghosts", USERS, "image docker.io/library/app:1: config.User: group "
         "'ghosts' not found in the image's /etc/group"),
        ({}, "1:ghosts", UserDB.parse(PASSWD, None), "image docker.io/library/app:1: "
         "config.User: group 'ghosts': the image has no /etc/group"),
        ({}, "a:b:c", USERS, "image docker.io/library/app:1: config.User: invalid user "
         "'a:b:c'"),
        ({}, "2147483648", USERS, "image docker.io/library/app:1: config.User: invalid "
         "user '2147483648': uid out of range"),
        ({}, "1:-1", USERS, "image docker.io/library/app:1: config.User: invalid user "
         "'1:-1': gid out of range"),
        ({"run_as_username": "ghost"}, "", USERS,
         f"{SC}.run_as_username: user 'ghost' not found in the image's /etc/passwd"),
        ({"run_as_user": {"value": -1}}, "", USERS,
         f"{SC}.run_as_user: invalid user '-1': uid out of range"),
        ({"run_as_group": {"value": 5}}, "app", USERS,
         f"{SC}.run_as_group: group 5 is specified without a user"),
        ({"supplemental_groups": [-3]}, "", USERS,
         f"{SC}.supplemental_groups[0]: gid -3 out of range"),
        ({"supplemental_groups_policy": 7}, "", USERS,
         f"{SC}.supplemental_groups_policy: unknown policy 7"),
    ],
)  # fmt: skip
def test_user_errors(
    sandbox: SandboxInfo, sc: dict[str, Any], image_user: str, users: UserDB, message: str
) -> None:
    img = image(cmd=("sh",), user=image_user)
    fails(config(linux=security(**sc)), sandbox, message, img=img, users=users)


@pytest.mark.parametrize(
    ("sc", "image_user", "message"),
    [
        ({}, "", "run_as_non_root: image will run as root"),
        ({}, "root", "run_as_non_root: image will run as root"),
        ({}, "0:1000", "run_as_non_root: image will run as root"),
        ({"run_as_user": {"value": 0}}, "app", "run_as_non_root: run_as_user 0 breaks the "
         "non-root policy"),
        ({"run_as_username": "root"}, "app", "run_as_non_root: run_as_username 'root' runs "
         "as root"),
        ({}, "app", None),
        ({"run_as_user": {"value": 1000}}, "", None),
    ],
)  # fmt: skip
def test_run_as_non_root(
    sandbox: SandboxInfo, sc: dict[str, Any], image_user: str, message: str | None
) -> None:
    img = image(cmd=("sh",), user=image_user)
    cfg = config(linux=security(**sc))
    if message is None:
        assert build(cfg, sandbox, img=img, run_as_non_root=True)["process"]["user"]["uid"]
    else:
        fails(cfg, sandbox, message, img=img, run_as_non_root=True)
    build(cfg, sandbox, img=img)  # not asked: no check


# ---- capabilities, privileged ------------------------------------------------------------


def _caps(add: list[str], drop: list[str]) -> dict[str, Any]:
    return {"capabilities": {"add_capabilities": add, "drop_capabilities": drop}}


ALL = list(CAPABILITY_NAMES)


@pytest.mark.parametrize(
    ("sc", "expected"),
    [
        ({}, DEFAULT_CAPS),
        (_caps([], []), DEFAULT_CAPS),
        (_caps(["SYS_ADMIN", "net_admin"], []), [*DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]),
        (_caps(["CAP_SYS_TIME", "CHOWN"], []), [*DEFAULT_CAPS, "CAP_SYS_TIME"]),
        (_caps([], ["CHOWN", "kill", "SYS_ADMIN"]),
         [c for c in DEFAULT_CAPS if c not in ("CAP_CHOWN", "CAP_KILL")]),
        (_caps(["ALL"], []), ALL),
        (_caps(["all"], ["CHOWN"]), [c for c in ALL if c != "CAP_CHOWN"]),
        (_caps(["NET_RAW"], ["ALL"]), ["CAP_NET_RAW"]),
        (_caps(["ALL"], ["ALL"]), []),
        (_caps([], ["ALL"]), []),
        (_caps(["SYS_ADMIN"], ["SYS_ADMIN"]), DEFAULT_CAPS),  # drop after add
    ],
)  # fmt: skip
def test_capabilities(sandbox: SandboxInfo, sc: dict[str, Any], expected: list[str]) -> None:
    caps = build(config(linux=security(**sc)), sandbox)["process"]["capabilities"]
    if expected:
        assert caps == {"bounding": expected, "effective": expected, "permitted": expected}
    else:
        assert caps == {}


def test_privileged(sandbox: SandboxInfo) -> None:
    sb = dataclasses.replace(sandbox, privileged=True)
    sc = {
        "privileged": True,
        "seccomp": {"profile_type": api_pb2.SecurityProfile.RuntimeDefault},
        "masked_paths": ["/proc/kcore"],
        **_caps([], ["ALL"]),
    }
    cfg = config(linux=security(**sc), devices=[{"host_path": "/dev/fuse", "permissions": "rw"}])
    spec = build(cfg, sb)
    assert spec["process"]["capabilities"]["bounding"] == ALL
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert spec["linux"]["devices"][0]["path"] == "/dev/fuse"
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert by_dest["/sys"]["options"][-1] == "rw"
    assert by_dest["/sys/fs/cgroup"]["options"][-1] == "rw"
    assert "cgroup" not in [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert oci_spec.wants_host_devices(cfg)
    assert not oci_spec.wants_host_devices(config())


def test_privileged_and_all_mean_what_the_runtime_holds(sandbox: SandboxInfo) -> None:
    """On a host whose root lacks CAP_SYS_RESOURCE, privileged (and add ALL) must not
    ask for it: capset would fail."""
    held = tuple(c for c in ALL if c != "CAP_SYS_RESOURCE")
    sb = dataclasses.replace(
        sandbox, privileged=True, host=dataclasses.replace(sandbox.host, capabilities=held)
    )
    privileged = build(config(linux=security(privileged=True)), sb)
    assert privileged["process"]["capabilities"]["bounding"] == list(held)
    add_all = build(config(linux=security(**_caps(["ALL"], []))), sb)
    assert "CAP_SYS_RESOURCE" not in add_all["process"]["capabilities"]["bounding"]


def test_unprivileged_defaults(sandbox: SandboxInfo) -> None:
    spec = build(config(), sandbox)
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["root"] == {"path": "/run/kubeling/c1/rootfs", "readonly": False}
    assert spec["linux"]["maskedPaths"] == list(oci_spec.DEFAULT_MASKED_PATHS)
    assert spec["linux"]["readonlyPaths"] == list(oci_spec.DEFAULT_READONLY_PATHS)
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "seccomp" not in spec["linux"]  # no profile asked for: none (containerd)
    assert "apparmorProfile" not in spec["process"]
    assert "rlimits" not in spec["process"] and "oomScoreAdj" not in spec["process"]
    assert "hostname" not in spec and "sysctl" not in spec["linux"]


def test_readonly_rootfs_no_new_privs_and_paths(sandbox: SandboxInfo) -> None:
    sc = {
        "readonly_rootfs": True,
        "no_new_privs": True,
        "masked_paths": ["/proc/x"],
        "readonly_paths": ["/proc/y", "/proc/z"],
    }
    spec = build(config(linux=security(**sc)), sandbox)
    assert spec["root"]["readonly"] is True
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["linux"]["maskedPaths"] == ["/proc/x"]
    assert spec["linux"]["readonlyPaths"] == ["/proc/y", "/proc/z"]
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    for path in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        assert by_dest[path]["options"] == ["rbind", "rprivate", "ro"]
    assert by_dest["/dev/shm"]["options"] == ["rbind", "rprivate", "rw"]


# ---- mounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("propagation", "readonly", "options", "root_propagation"),
    [
        (api_pb2.PROPAGATION_PRIVATE, False, ["rbind", "rprivate", "rw"], None),
        (api_pb2.PROPAGATION_PRIVATE, True, ["rbind", "rprivate", "ro"], None),
        (api_pb2.PROPAGATION_HOST_TO_CONTAINER, False, ["rbind", "rslave", "rw"], "rslave"),
        (api_pb2.PROPAGATION_BIDIRECTIONAL, True, ["rbind", "rshared", "ro"], "rshared"),
    ],
)
def test_mount_propagation(
    sandbox: SandboxInfo,
    propagation: int,
    readonly: bool,
    options: list[str],
    root_propagation: str | None,
) -> None:
    mount = {
        "container_path": "/data",
        "host_path": "/srv/data",
        "readonly": readonly,
        "propagation": propagation,
        "selinux_relabel": True,  # ignored
    }
    spec = build(config(mounts=[mount]), sandbox)
    data = [m for m in spec["mounts"] if m["destination"] == "/data"]
    assert data == [{"destination": "/data", "type": "bind", "source": "/srv/data",
                     "options": options}]  # fmt: skip
    assert spec["linux"].get("rootfsPropagation") == root_propagation


def test_rshared_wins_over_rslave(sandbox: SandboxInfo) -> None:
    mounts = [
        {"container_path": "/a", "host_path": "/a",
         "propagation": api_pb2.PROPAGATION_BIDIRECTIONAL},
        {"container_path": "/b", "host_path": "/b",
         "propagation": api_pb2.PROPAGATION_HOST_TO_CONTAINER},
    ]  # fmt: skip
    assert build(config(mounts=mounts), sandbox)["linux"]["rootfsPropagation"] == "rshared"


def test_mount_order_and_overrides(sandbox: SandboxInfo) -> None:
    mounts = [
        {"container_path": "/var/lib/deep/x", "host_path": "/h/deep"},
        {"container_path": "/etc/hosts/", "host_path": "/h/hosts"},  # overrides the sandbox's
        {"container_path": "/data", "host_path": "/h/data"},
        {"container_path": "/sys", "host_path": "/sys"},  # replaces the default sysfs
    ]
    spec = build(config(mounts=mounts), sandbox)
    assert [(m["destination"], m["source"]) for m in spec["mounts"]] == [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/mqueue", "mqueue"),
        ("/sys/fs/cgroup", "cgroup"),
        ("/data", "/h/data"),
        ("/sys", "/sys"),
        ("/etc/hosts/", "/h/hosts"),
        ("/etc/hostname", sandbox.hostname_path),
        ("/etc/resolv.conf", sandbox.resolv_path),
        ("/dev/shm", sandbox.shm_path),
        ("/var/lib/deep/x", "/h/deep"),
    ]
    cgroup = next(m for m in spec["mounts"] if m["type"] == "cgroup")
    assert cgroup["options"] == ["nosuid", "noexec", "nodev", "relatime", "ro"]


def test_dev_mount_replaces_everything_under_dev(sandbox: SandboxInfo) -> None:
    sb = dataclasses.replace(sandbox, shm_path="", hostname_path="", hosts_path="")
    spec = build(config(mounts=[{"container_path": "/dev", "host_path": "/dev"}]), sb)
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/sys", "/sys/fs/cgroup", "/dev", "/etc/resolv.conf",
    ]  # fmt: skip


def test_host_ipc_mounts_the_host_shm(sandbox: SandboxInfo) -> None:
    sc = {"namespace_options": {"ipc": api_pb2.NODE}}
    spec = build(config(linux=security(**sc)), sandbox)
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                    "options": ["rbind", "rprivate", "rw"]}]  # fmt: skip


def test_no_sandbox_files_keeps_default_shm(sandbox: SandboxInfo) -> None:
    sb = dataclasses.replace(sandbox, shm_path="", hostname_path="", hosts_path="", resolv_path="")
    spec = build(config(), sb)
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
    ]  # fmt: skip
    assert spec["mounts"][3]["type"] == "tmpfs"


# ---- namespaces, cgroups, annotations ----------------------------------------------------


def _namespaces(spec: dict[str, Any]) -> dict[str, str]:
    return {ns["type"]: ns.get("path", "") for ns in spec["linux"]["namespaces"]}


@pytest.mark.parametrize(
    ("pid_mode", "pid"),
    [
        (api_pb2.POD, "pid"),
        (api_pb2.CONTAINER, ""),  # a new one
        (api_pb2.NODE, None),  # the host's: left out
        (api_pb2.TARGET, "target-pid"),
    ],
)
def test_pid_namespace(sandbox: SandboxInfo, pid_mode: int, pid: str | None) -> None:
    sc = {"namespace_options": {"pid": pid_mode, "target_id": "other"}}
    namespaces = _namespaces(build(config(linux=security(**sc)), sandbox))
    assert namespaces.get("pid") == (pid and str(Path(sandbox.pid_ns).parent / pid))
    assert namespaces["network"] == sandbox.network_ns
    assert namespaces["ipc"] == sandbox.ipc_ns
    assert namespaces["uts"] == sandbox.uts_ns
    assert namespaces["mount"] == "" and namespaces["cgroup"] == ""


def test_host_namespaces_are_left_out(sandbox: SandboxInfo) -> None:
    sb = dataclasses.replace(
        sandbox, network_ns=HOST, ipc_ns=HOST, uts_ns=HOST, pid_ns=HOST,
        host=dataclasses.replace(HOST_FACTS, cgroup_v2=False),
    )  # fmt: skip
    spec = build(config(), sb)
    assert spec["linux"]["namespaces"] == [{"type": "mount"}]


def test_cgroups_path_and_annotations(sandbox: SandboxInfo) -> None:
    cfg = config(image={"image": "app:1", "user_specified_image": "app:1"})
    spec = build(cfg, sandbox)
    assert spec["linux"]["cgroupsPath"] == "/kubepods/pod-uid/c1"
    assert spec["annotations"] == {
        "io.kubernetes.cri.sandbox-id": "sb1",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "pod-uid",
        "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "app:1",
        "io.kubernetes.cri.container-type": "container",
    }
    spec = build(config(), dataclasses.replace(sandbox, cgroup_parent=""))
    assert spec["linux"]["cgroupsPath"] == "/k8s.io/c1"
    assert spec["annotations"]["io.kubernetes.cri.image-name"] == "docker.io/library/app:1"


# ---- resources, devices ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "facts", "expected", "oom"),
    [
        ({}, {}, {}, 0),
        ({"cpu_period": 100000, "cpu_quota": 50000, "cpu_shares": 512, "cpuset_cpus": "0-1",
          "cpuset_mems": "0", "oom_score_adj": 999},
         {}, {"cpu": {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0-1",
                      "mems": "0"}}, 999),
        ({"memory_limit_in_bytes": 1 << 20}, {},
         {"memory": {"limit": 1 << 20, "swap": 1 << 20}}, 0),
        ({"memory_limit_in_bytes": 1 << 20}, {"swap": False}, {"memory": {"limit": 1 << 20}}, 0),
        ({"memory_limit_in_bytes": 1 << 20, "memory_swap_limit_in_bytes": 2 << 20}, {},
         {"memory": {"limit": 1 << 20, "swap": 2 << 20}}, 0),
        ({"memory_swap_limit_in_bytes": 2 << 20}, {"swap": False}, {}, 0),
        ({"cpu_quota": -1, "oom_score_adj": -1000}, {}, {"cpu": {"quota": -1}}, -1000),
        ({"hugepage_limits": [{"page_size": "2MB", "limit": 4 << 20}]}, {},
         {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, 0),
        ({"hugepage_limits": [{"page_size": "2MB", "limit": 1}]}, {"hugetlb": False}, {}, 0),
        ({"unified": {"memory.high": "1000000", "pids.max": "10"}}, {},
         {"unified": {"memory.high": "1000000", "pids.max": "10"}}, 0),
    ],
)  # fmt: skip
def test_resources(
    sandbox: SandboxInfo,
    resources: dict[str, Any],
    facts: dict[str, Any],
    expected: dict[str, Any],
    oom: int,
) -> None:
    sb = dataclasses.replace(sandbox, host=dataclasses.replace(HOST_FACTS, **facts))
    spec = build(config(linux={"resources": resources}), sb)
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}],
                                          **expected}  # fmt: skip
    assert spec["process"]["oomScoreAdj"] == oom


def test_devices(sandbox: SandboxInfo) -> None:
    devices = [
        {"host_path": "/dev/fuse", "container_path": "/dev/fuse", "permissions": "rwm"},
        {"host_path": "/dev/loop0", "container_path": "/dev/xvda", "permissions": "r"},
        {"host_path": "/dev/loop0", "permissions": "rw"},
    ]
    linux = build(config(devices=devices), sandbox)["linux"]
    assert linux["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/xvda", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 6},
        {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 6},
    ]  # fmt: skip
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"},
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "rw"},
    ]


# ---- seccomp, apparmor -------------------------------------------------------------------


def _seccomp(**profile: Any) -> dict[str, Any]:
    return security(seccomp=profile)


@pytest.mark.parametrize(
    ("sc", "expected"),
    [
        ({}, None),
        (_seccomp(profile_type=api_pb2.SecurityProfile.Unconfined), None),
        (_seccomp(profile_type=api_pb2.SecurityProfile.RuntimeDefault), "default"),
        (security(seccomp_profile_path="runtime/default"), "default"),
        (security(seccomp_profile_path="docker/default"), "default"),
        (security(seccomp_profile_path="unconfined"), None),
        (_seccomp(profile_type=api_pb2.SecurityProfile.Localhost,
                  localhost_ref="/profiles/local.json"), "local"),
        (_seccomp(profile_type=api_pb2.SecurityProfile.Localhost,
                  localhost_ref="localhost//profiles/local.json"), "local"),
        (security(seccomp_profile_path="localhost//profiles/local.json"), "local"),
    ],
)  # fmt: skip
def test_seccomp_choices(sandbox: SandboxInfo, sc: dict[str, Any], expected: str | None) -> None:
    seccomp = build(config(linux=sc), sandbox)["linux"].get("seccomp")
    if expected is None:
        assert seccomp is None
    elif expected == "local":  # what Go's json.Unmarshal into LinuxSeccomp keeps
        assert seccomp == {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }
    else:
        assert seccomp == seccomp_default.default_profile(
            DEFAULT_CAPS, machine="x86_64", kernel=(6, 1)
        )


def test_runtime_default_follows_final_capabilities(sandbox: SandboxInfo) -> None:
    sc = {
        "seccomp": {"profile_type": api_pb2.SecurityProfile.RuntimeDefault},
        **_caps(["SYS_ADMIN", "SYS_PTRACE"], ["SYS_CHROOT"]),
    }
    names = [s["names"] for s in build(config(linux=security(**sc)), sandbox)["linux"]
             ["seccomp"]["syscalls"]]  # fmt: skip
    assert ["chroot"] not in names
    assert any("mount" in n for n in names) and any("kcmp" in n for n in names)
    assert ["clone3"] not in names  # CAP_SYS_ADMIN: no ENOSYS rule for clone3


def test_default_profile_shape() -> None:
    profile = seccomp_default.default_profile(DEFAULT_CAPS, machine="x86_64", kernel=(5, 15))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    syscalls = profile["syscalls"]
    assert syscalls[0]["action"] == "SCMP_ACT_ALLOW" and "read" in syscalls[0]["names"]
    assert "mount" not in syscalls[0]["names"] and "ptrace" not in syscalls[0]["names"]
    assert syscalls[1:4] == [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 39, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_GT"}]},
    ]  # fmt: skip
    personality = [s["args"][0]["value"] for s in syscalls if s["names"] == ["personality"]]
    assert personality == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert {"names": ["process_vm_readv", "process_vm_writev", "ptrace"],
            "action": "SCMP_ACT_ALLOW"} in syscalls  # fmt: skip
    assert {"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW"} in syscalls
    assert {"names": ["chroot"], "action": "SCMP_ACT_ALLOW"} in syscalls  # CAP_SYS_CHROOT
    assert syscalls[-2:] == [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ]  # fmt: skip
    runtime_seccomp._parse(profile)


@pytest.mark.parametrize(
    ("machine", "kernel", "arches", "extra", "clone_index"),
    [
        ("aarch64", (6, 1), ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"], "set_tls", 0),
        ("s390x", (6, 1), ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"], "s390_runtime_instr", 1),
        ("armv7l", (6, 1), [], "cacheflush", 0),
        ("ppc64le", (4, 4), [], "swapcontext", 0),
        ("riscv64", (6, 1), ["SCMP_ARCH_RISCV64"], "riscv_hwprobe", 0),
    ],
)
def test_default_profile_per_machine(
    machine: str, kernel: tuple[int, int], arches: list[str], extra: str, clone_index: int
) -> None:
    profile = seccomp_default.default_profile([], machine=machine, kernel=kernel)
    assert profile["architectures"] == arches
    names = [n for s in profile["syscalls"] for n in s["names"]]
    assert extra in names
    assert ("ptrace" in names) is (kernel >= (4, 8))
    clone = next(s for s in profile["syscalls"] if s["names"] == ["clone"])
    assert clone["args"][0]["index"] == clone_index


@pytest.mark.parametrize(
    ("sc", "privileged", "expected"),
    [
        ({}, False, oci_spec.DEFAULT_APPARMOR_PROFILE),  # unset: RuntimeDefault
        ({}, True, None),
        ({"apparmor": {"profile_type": api_pb2.SecurityProfile.Unconfined}}, False, None),
        ({"apparmor": {"profile_type": api_pb2.SecurityProfile.Localhost,
                       "localhost_ref": "localhost/my-profile"}}, True, "my-profile"),
        ({"apparmor_profile": "localhost/legacy"}, False, "legacy"),
        ({"apparmor_profile": "runtime/default"}, False, oci_spec.DEFAULT_APPARMOR_PROFILE),
    ],
)  # fmt: skip
def test_apparmor(
    sandbox: SandboxInfo, sc: dict[str, Any], privileged: bool, expected: str | None
) -> None:
    facts = dataclasses.replace(HOST_FACTS, apparmor=True)
    sb = dataclasses.replace(sandbox, privileged=privileged, host=facts)
    cfg = config(linux=security(privileged=privileged, **sc))
    assert build(cfg, sb)["process"].get("apparmorProfile") == expected
    # Without AppArmor on the host the request's profile is ignored.
    sb = dataclasses.replace(sb, host=HOST_FACTS)
    assert "apparmorProfile" not in build(cfg, sb)["process"]


# ---- bad input ---------------------------------------------------------------------------

LOCALHOST = api_pb2.SecurityProfile.Localhost
BAD_CONTAINER_CONFIGS = [
    ({"metadata": None}, "config.metadata: required"),
    ({"metadata": {"name": ""}}, "config.metadata.name: required"),
    ({"command": ["", "x"]}, "config.command[0]: must not be empty"),
    ({"working_dir": "rel"}, "config.working_dir: must be absolute"),
    ({"envs": [{"key": "", "value": b"x"}]}, "config.envs[0].key: required"),
    ({"envs": [{"key": "A", "value": b""}, {"key": "B=C", "value": b"x"}]},
     "config.envs[1].key: 'B=C' must not contain '=' or NUL"),
    ({"envs": [{"key": "A", "value": b"\xff"}]}, "config.envs[0].value: is not valid UTF-8"),
    ({"envs": [{"key": "A", "value": b"a\0b"}]}, "config.envs[0].value: must not contain NUL"),
    ({"mounts": [{"container_path": "/a", "host_path": "/a"}, {"container_path": "/b",
      "host_path": "/b"}, {"container_path": "rel", "host_path": "/c"}]},
     "config.mounts[2].container_path: must be absolute"),
    ({"mounts": [{"container_path": "/a"}]}, "config.mounts[0].host_path: required"),
    ({"mounts": [{"container_path": "/a", "host_path": "a"}]},
     "config.mounts[0].host_path: must be absolute"),
    ({"mounts": [{"container_path": "/a", "host_path": "/a",
                  "uidMappings": [{"host_id": 1, "container_id": 0, "length": 1}]}]},
     "config.mounts[0].uidMappings: id-mapped mounts are not supported"),
    ({"mounts": [{"container_path": "/a", "host_path": "/a", "propagation": 9}]},
     "config.mounts[0].propagation: unknown propagation 9"),
    ({"mounts": [{"container_path": "/a", "host_path": "/a", "recursive_read_only": True}]},
     "config.mounts[0].recursive_read_only: conflicts with a read-write mount"),
    ({"mounts": [{"container_path": "/a", "host_path": "/a", "readonly": True,
                  "recursive_read_only": True}]},
     "config.mounts[0].recursive_read_only: recursive read-only mounts are not supported"),
    ({"devices": [{"host_path": "dev/fuse", "permissions": "r"}]},
     "config.devices[0].host_path: must be absolute"),
    ({"devices": [{"host_path": "/dev/fuse", "container_path": "fuse", "permissions": "r"}]},
     "config.devices[0].container_path: must be absolute"),
    ({"devices": [{"host_path": "/dev/fuse", "permissions": "rx"}]},
     "config.devices[0].permissions: 'rx' is not a combination of r, w and m"),
    ({"devices": [{"host_path": "/dev/fuse", "permissions": ""}]},
     "config.devices[0].permissions: '' is not a combination of r, w and m"),
    ({"devices": [{"host_path": "/dev/nope", "permissions": "r"}]},
     "config.devices[0].host_path: /dev/nope: No such file or directory"),
    ({"devices": [{"host_path": "/dev/null-ish", "permissions": "r"}]},
     "config.devices[0].host_path: /dev/null-ish is not a device"),
    ({"CDI_devices": [{"name": "vendor.com/gpu=0"}]},
     "config.CDI_devices: CDI devices are not supported"),
    ({"linux": security(privileged=True)},
     f"{SC}.privileged: no privileged container allowed in a sandbox that is not"),
    ({"linux": security(**_caps(["NET_ADMIN", "FLY"], []))},
     f"{SC}.capabilities.add_capabilities[1]: unknown capability 'FLY'"),
    ({"linux": security(**_caps([], ["BOGUS"]))},
     f"{SC}.capabilities.drop_capabilities[0]: unknown capability 'BOGUS'"),
    ({"linux": security(masked_paths=["/ok", "proc"])},
     f"{SC}.masked_paths[1]: must be absolute"),
    ({"linux": security(readonly_paths=["proc"])}, f"{SC}.readonly_paths[0]: must be absolute"),
    ({"linux": security(namespace_options={"pid": api_pb2.TARGET, "target_id": "ghost"})},
     f"{SC}.namespace_options.target_id: no container 'ghost' in the sandbox"),
    ({"linux": security(namespace_options={"pid": 9})},
     f"{SC}.namespace_options.pid: unknown namespace mode 9"),
    ({"linux": security(namespace_options={"userns_options": {"mode": api_pb2.POD}})},
     f"{SC}.namespace_options.userns_options: user namespaces are not supported"),
    ({"linux": _seccomp(profile_type=api_pb2.SecurityProfile.RuntimeDefault,
                        localhost_ref="/x")},
     f"{SC}.seccomp.localhost_ref: must only be set when profile_type is Localhost"),
    ({"linux": _seccomp(profile_type=LOCALHOST, localhost_ref="rel.json")},
     f"{SC}.seccomp.localhost_ref: 'rel.json' is not an absolute path"),
    ({"linux": _seccomp(profile_type=LOCALHOST, localhost_ref="/profiles/none.json")},
     f"{SC}.seccomp.localhost_ref: cannot load seccomp profile /profiles/none.json: "
     "No such file or directory"),
    ({"linux": _seccomp(profile_type=LOCALHOST, localhost_ref="/profiles/bad.json")},
     f"{SC}.seccomp.localhost_ref: decoding seccomp profile /profiles/bad.json failed: "
     "Expecting value: line 1 column 1"),
    ({"linux": _seccomp(profile_type=7)}, f"{SC}.seccomp.profile_type: unknown profile type 7"),
    ({"linux": _seccomp(profile_type=LOCALHOST, localhost_ref="/profiles/list.json")},
     f"{SC}.seccomp.localhost_ref: seccomp profile /profiles/list.json is not a JSON object"),
    ({"linux": security(seccomp_profile_path="foo")},
     f"{SC}.seccomp_profile_path: invalid profile 'foo'"),
    ({"linux": {"resources": {"oom_score_adj": 1001}}},
     "config.linux.resources.oom_score_adj: 1001 is not in -1000..1000"),
    ({"linux": {"resources": {"cpu_shares": -2}}},
     "config.linux.resources.cpu_shares: -2 is below 0"),
    ({"linux": {"resources": {"cpu_period": -1}}},
     "config.linux.resources.cpu_period: -1 is below 0"),
    ({"linux": {"resources": {"memory_limit_in_bytes": -2}}},
     "config.linux.resources.memory_limit_in_bytes: -2 is below -1"),
    ({"linux": {"resources": {"hugepage_limits": [{"limit": 1}]}}},
     "config.linux.resources.hugepage_limits[0].page_size: required"),
    ({"linux": {"resources": {"unified": {"../x": "1"}}}},
     "config.linux.resources.unified: '../x' is not a cgroup file name"),
]  # fmt: skip


def test_image_volume_mounts_are_unimplemented(sandbox: SandboxInfo) -> None:
    cfg = config(mounts=[{"container_path": "/a", "image": {"image": "vol:1"}}])
    with pytest.raises(Unimplemented, match=r"config.mounts\[0\].image: image volume mounts"):
        build(cfg, sandbox)


@pytest.mark.parametrize(("fields", "message"), BAD_CONTAINER_CONFIGS)
def test_bad_container_config(sandbox: SandboxInfo, fields: dict[str, Any], message: str) -> None:
    if fields.get("metadata", 1) is None:
        cfg = api_pb2.ContainerConfig(image={"image": "app:1"})
    else:
        cfg = config(**fields)
    fails(cfg, sandbox, message)


@pytest.mark.parametrize(
    ("fields", "img", "message"),
    [
        ({}, image(), "config.command: no command specified, and image "
         "docker.io/library/app:1 has none"),
        ({}, image(entrypoint=("",)), "config.command: no command specified, and image "
         "docker.io/library/app:1 has none"),
        ({"args": [""]}, image(cmd=("sh",)), "config.args[0]: must not be empty"),
        ({}, image(entrypoint=("", "x")),
         "image docker.io/library/app:1: config.Entrypoint[0]: must not be empty"),
        ({}, image(cmd=("", "x")),
         "image docker.io/library/app:1: config.Cmd[0]: must not be empty"),
        ({}, image(cmd=("sh",), working_dir="srv"),
         "image docker.io/library/app:1: config.WorkingDir: 'srv' is not absolute"),
        ({}, image(cmd=("sh",), env=("=x",)),
         "image docker.io/library/app:1: config.Env[0]: '=x' is not KEY=value"),
    ],
)  # fmt: skip
def test_bad_images(sandbox: SandboxInfo, fields: dict[str, Any], img: Image, message: str) -> None:
    fails(config(**fields), sandbox, message, img=img)


def test_apparmor_bad_input(sandbox: SandboxInfo) -> None:
    sb = dataclasses.replace(sandbox, host=dataclasses.replace(HOST_FACTS, apparmor=True))
    for sc, message in [
        ({"apparmor": {"profile_type": LOCALHOST}},
         f"{SC}.apparmor.localhost_ref: required for a Localhost profile"),
        ({"apparmor": {"profile_type": api_pb2.SecurityProfile.Unconfined, "localhost_ref": "x"}},
         f"{SC}.apparmor.localhost_ref: must only be set when profile_type is Localhost"),
        ({"apparmor": {"profile_type": 5}}, f"{SC}.apparmor.profile_type: unknown profile type 5"),
        ({"apparmor_profile": "bogus"}, f"{SC}.apparmor_profile: invalid profile 'bogus'"),
    ]:  # fmt: skip
        fails(config(linux=security(**sc)), sb, message)


# ---- sandbox_spec ------------------------------------------------------------------------

PAUSE = image(entrypoint=("/pause",), user="65535:65535", env=("PATH=/bin",))


def sandbox_config(**kwargs: Any) -> api_pb2.PodSandboxConfig:
    kwargs.setdefault("metadata", {"name": "pod", "namespace": "default", "uid": "pod-uid"})
    kwargs.setdefault("hostname", "pod-host")
    kwargs.setdefault("log_directory", "/var/log/pods/x")
    return api_pb2.PodSandboxConfig(**kwargs)


def build_sandbox(
    cfg: api_pb2.PodSandboxConfig,
    tmp_path: Path,
    *,
    img: Image = PAUSE,
    users: UserDB = USERS,
    **kwargs: Any,
) -> dict[str, Any]:
    netns = tmp_path / "netns"
    netns.touch()
    kwargs.setdefault("netns_path", str(netns))
    kwargs.setdefault("shm_path", str(tmp_path / "shm"))
    kwargs.setdefault("resolv_path", str(tmp_path / "resolv.conf"))
    spec = oci_spec.sandbox_spec(
        sandbox_id="sb1",
        config=cfg,
        image=img,
        rootfs="/run/kubeling/sb1/rootfs",
        cgroup_parent=cfg.linux.cgroup_parent,
        users=users,
        load_seccomp=load_seccomp,
        image_name="registry.k8s.io/pause:3.10",
        host=HOST_FACTS,
        **kwargs,
    )
    validate(copy.deepcopy(spec))
    if "seccomp" in spec["linux"]:
        runtime_seccomp._parse(spec["linux"]["seccomp"])
    return spec


def test_sandbox_defaults(tmp_path: Path) -> None:
    cfg = sandbox_config(linux={"cgroup_parent": "/kubepods/pod-uid"})
    spec = build_sandbox(cfg, tmp_path)
    process = spec["process"]
    assert process["args"] == ["/pause"]
    assert process["env"] == ["PATH=/bin"]  # no default PATH, no HOSTNAME
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 65535, "gid": 65535, "additionalGids": [65535]}
    assert process["oomScoreAdj"] == -998
    assert process["noNewPrivileges"] is True
    assert process["capabilities"]["bounding"] == DEFAULT_CAPS
    assert spec["root"] == {"path": "/run/kubeling/sb1/rootfs", "readonly": True}
    assert spec["hostname"] == "pod-host"
    assert spec["linux"]["cgroupsPath"] == "/kubepods/pod-uid/sb1"
    assert spec["linux"]["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 2},
    }
    assert _namespaces(spec) == {
        "pid": "", "ipc": "", "uts": "", "mount": "", "network": str(tmp_path / "netns"),
    }  # fmt: skip
    assert spec["linux"]["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net.ipv4.ping_group_range": "0 2147483647",
    }
    assert spec["linux"]["maskedPaths"] == list(oci_spec.DEFAULT_MASKED_PATHS)
    assert "seccomp" not in spec["linux"]
    ro = ["rbind", "ro", "nosuid", "nodev", "noexec"]
    assert spec["mounts"][-2:] == [
        {"destination": "/dev/shm", "type": "bind", "source": str(tmp_path / "shm"),
         "options": ro},
        {"destination": "/etc/resolv.conf", "type": "bind",
         "source": str(tmp_path / "resolv.conf"), "options": ro},
    ]  # fmt: skip
    assert [m["destination"] for m in spec["mounts"]].count("/dev/shm") == 1
    assert spec["annotations"] == {
        "io.kubernetes.cri.sandbox-id": "sb1",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "pod-uid",
        "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/x",
        "io.kubernetes.cri.podsandbox.image-name": "registry.k8s.io/pause:3.10",
        "io.kubernetes.cri.container-type": "sandbox",
    }


@pytest.mark.parametrize(
    ("options", "expected", "hostname"),
    [
        ({}, {"pid", "ipc", "uts", "mount", "network"}, True),
        ({"pid": api_pb2.CONTAINER}, {"pid", "ipc", "uts", "mount", "network"}, True),
        ({"network": api_pb2.NODE}, {"pid", "ipc", "mount"}, False),
        ({"pid": api_pb2.NODE}, {"ipc", "uts", "mount", "network"}, True),
        ({"ipc": api_pb2.NODE}, {"pid", "uts", "mount", "network"}, True),
        ({"network": api_pb2.NODE, "pid": api_pb2.NODE, "ipc": api_pb2.NODE}, {"mount"}, False),
    ],
)
def test_sandbox_namespaces(
    tmp_path: Path, options: dict[str, int], expected: set[str], hostname: bool
) -> None:
    cfg = sandbox_config(linux={"security_context": {"namespace_options": options}})
    spec = build_sandbox(cfg, tmp_path, netns_path="")
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == expected
    assert ("hostname" in spec) is hostname
    if options.get("network") == api_pb2.NODE:
        assert "sysctl" not in spec["linux"]  # no unprivileged port/ICMP sysctls
    if options.get("ipc") == api_pb2.NODE:
        shm = [m["source"] for m in spec["mounts"] if m["destination"] == "/dev/shm"]
        assert shm == ["/dev/shm"]


def test_sandbox_sysctls_user_and_security(tmp_path: Path) -> None:
    sysctls = {
        "net.ipv4.ip_unprivileged_port_start": "1024",
        "kernel.shm_rmid_forced": "1",
        "fs.mqueue.msg_max": "20",
        "kernel.domainname": "example",
    }
    cfg = sandbox_config(
        linux={
            "cgroup_parent": "",
            "sysctls": sysctls,
            "resources": {"cpu_period": 100000, "cpu_quota": 20000, "cpu_shares": 205,
                          "memory_limit_in_bytes": 1 << 26},
            "security_context": {
                "run_as_user": {"value": 1000},
                "supplemental_groups": [5, 4],
                "seccomp": {"profile_type": api_pb2.SecurityProfile.RuntimeDefault},
            },
        }
    )  # fmt: skip
    spec = build_sandbox(cfg, tmp_path, unprivileged_icmp=False, img=image(cmd=("/pause",)))
    assert spec["linux"]["sysctl"] == sysctls  # the pod's value wins
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [1001]}
    assert spec["linux"]["cgroupsPath"] == "/k8s.io/sb1"
    assert spec["linux"]["seccomp"] == seccomp_default.default_profile(
        DEFAULT_CAPS, machine="x86_64", kernel=(6, 1)
    )
    assert spec["annotations"]["io.kubernetes.cri.sandbox-cpu-period"] == "100000"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-cpu-quota"] == "20000"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-cpu-shares"] == "205"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-memory"] == str(1 << 26)


def test_sandbox_supplemental_groups_without_user(tmp_path: Path) -> None:
    cfg = sandbox_config(
        linux={"security_context": {"supplemental_groups": [5, 4, 5], "privileged": True,
                                    "seccomp": {"profile_type": LOCALHOST,
                                                "localhost_ref": "/profiles/local.json"}}}
    )  # fmt: skip
    spec = build_sandbox(cfg, tmp_path, img=image(cmd=("/pause",)))
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [4, 5]}
    assert "seccomp" not in spec["linux"]  # privileged sandbox: none


@pytest.mark.parametrize(
    ("fields", "img", "message"),
    [
        ({"metadata": {"name": ""}}, PAUSE, "config.metadata.name: required"),
        ({"linux": {"sysctls": {"kernel.panic": "1"}}}, PAUSE,
         "config.linux.sysctls: kernel.panic is not namespaced"),
        ({"linux": {"sysctls": {"net.core.somaxconn": "1"}, "security_context":
          {"namespace_options": {"network": api_pb2.NODE}}}}, PAUSE,
         "config.linux.sysctls: net.core.somaxconn needs the pod's own network namespace, "
         "not the host's"),
        ({"linux": {"sysctls": {"kernel.msgmax": "1"}, "security_context":
          {"namespace_options": {"ipc": api_pb2.NODE}}}}, PAUSE,
         "config.linux.sysctls: kernel.msgmax needs the pod's own IPC namespace, not the "
         "host's"),
        ({"linux": {"sysctls": {"kernel.hostname": "x"}, "security_context":
          {"namespace_options": {"network": api_pb2.NODE}}}}, PAUSE,
         "config.linux.sysctls: kernel.hostname needs the pod's own UTS namespace, not the "
         "host's"),
        ({"linux": {"cgroup_parent": "/kubepods/../x"}}, PAUSE,
         "config.linux.cgroup_parent: '/kubepods/../x' is not a cgroup path"),
        ({"linux": {"security_context": {"namespace_options": {"pid": api_pb2.TARGET}}}},
         PAUSE, f"{SC}.namespace_options.pid: unsupported namespace mode 3"),
        ({"linux": {"security_context": {"namespace_options": {"userns_options": {}}}}},
         PAUSE, f"{SC}.namespace_options.userns_options: user namespaces are not supported"),
        ({"linux": {"security_context": {"run_as_group": {"value": 1}}}}, PAUSE,
         f"{SC}.run_as_group: group 1 is specified without a user"),
        ({}, image(), "image registry.k8s.io/pause:3.10: the sandbox image has no entrypoint "
         "or cmd"),
        ({}, image(entrypoint=("",)), "image registry.k8s.io/pause:3.10: "
         "config.Entrypoint[0]: must not be empty"),
        ({}, image(cmd=("/pause",), user="ghost"), "image registry.k8s.io/pause:3.10: "
         "config.User: user 'ghost' not found in the image's /etc/passwd"),
    ],
)  # fmt: skip
def test_bad_sandbox_config(
    tmp_path: Path, fields: dict[str, Any], img: Image, message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        build_sandbox(sandbox_config(**fields), tmp_path, img=img)
    assert str(info.value) == message


def test_sandbox_without_metadata(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^config\.metadata: required$"):
        build_sandbox(api_pb2.PodSandboxConfig(), tmp_path)
