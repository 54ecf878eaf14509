"""UpdateContainerResources, as containerd's CRI plugin does it
(internal/cri/server/container_update_resources*.go), and the resources ContainerStatus
reports (containerd's copyResourcesToStatus).

Owns: turning the request's LinuxContainerResources into OCI ``linux.resources``
(cri.oci_spec's conversion, the one CreateContainer uses) merged into the container's
config.json, writing the container's cgroup, and persisting config.json, which stays
the source of truth for the container's limits; and the way back, config.json to the
``ContainerResources`` of ContainerStatus. Doesn't own: cgroup files
(runtime.cgroups), the record (cri.store), the container's processes.

Update, in order, under the container's lock (no Start, Stop or Remove of it runs
meanwhile):
  1. the record, brought up to date from the supervisor (NOT_FOUND if unknown);
  2. the request converted and checked (INVALID_ARGUMENT naming the field, such as
     ``linux.cpu_period``), then merged into config.json's ``linux.resources``;
  3. config.json replaced atomically;
  4. a created or running container's cgroup written: the cpu and memory sections
     as merged (so that a swap limit goes with its memory limit), the hugepage
     limits and unified keys of the request. If the kernel refuses a value, the old
     config.json is put back and its sections re-applied (best effort) before the
     error goes out: INVALID_ARGUMENT for a value the kernel calls invalid (a cpuset
     naming CPUs the node lacks), FAILED_PRECONDITION when the container's state
     prevents it (a memory limit below what it uses: EBUSY).

Like containerd:
- a zero or empty field leaves the current value (WithResources sets only what is
  given); a memory limit without a swap limit sets both, where swap is limited;
- ``oom_score_adj`` is not updated (WithResources does not touch it); the status
  reports the one the container was created with;
- an exited container gets its config.json updated and nothing else, and the call
  succeeds (containerd updates the spec of any container not being removed);
- ``windows`` and ``annotations`` are ignored.
Unlike containerd:
- a created container's cgroup is written too: kubeling's runtime makes the cgroup,
  limits included, at create (containerd's runc shim does it at start);
- hugepage limits replace those of the same page size (containerd appends them, so
  its spec can list a size twice);
- values the kernel would refuse are refused first with the field named: cpu_period
  outside 1000-1000000 µs, cpu_quota below 1000 µs (but -1), cpu_shares outside
  2-262144, cpuset lists that do not parse.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import re
from typing import TYPE_CHECKING, Any, NoReturn

from cri.api import api_pb2
from cri.errors import InvalidArgument
from cri.oci_spec.resources import _resources
from cri.runtime_service.sandbox import host_facts
from cri.store import ContainerState
from runtime import errors as runtime_errors
from runtime.cgroups import CgroupError, open_manager
from runtime.state import atomic_write

if TYPE_CHECKING:
    from cri.runtime_service.containers import Containers

log = logging.getLogger(__name__)

FIELD = "linux"  # the request's field path prefix in error messages
CPU_PERIOD_US = (1000, 1_000_000)  # the kernel's cpu.cfs_period_us range
MIN_CPU_QUOTA_US = 1000
CPU_SHARES = (2, 262144)
_CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
# Where a cgroup write error points back to a request field: the file (or OCI key)
# named in the error, first match wins (unified keys first: they name files too).
_FIELDS_BY_FILE = (
    ("linux.resources.unified", "unified"),
    ("cpuset.cpus", "cpuset_cpus"),
    ("cpuset.mems", "cpuset_mems"),
    ("memory.memsw", "memory_swap_limit_in_bytes"),
    ("memory.swap", "memory_swap_limit_in_bytes"),
    ("linux.resources.memory.swap", "memory_swap_limit_in_bytes"),
    ("memory.limit_in_bytes", "memory_limit_in_bytes"),
    ("memory.max", "memory_limit_in_bytes"),
    ("cpu.shares", "cpu_shares"),
    ("cpu.weight", "cpu_shares"),
    ("cpu.cfs_period_us", "cpu_period"),
    ("cpu.cfs_quota_us", "cpu_quota"),
    ("cpu.max", "cpu_quota"),
    ("hugetlb", "hugepage_limits"),
    ("hugepageLimits", "hugepage_limits"),
)


def update_resources(
    containers: Containers, request: api_pb2.UpdateContainerResourcesRequest
) -> None:
    """UpdateContainerResources over the containers of one node (see the module
    docstring for the steps and the errors)."""
    record = containers.current(request.container_id)  # NOT_FOUND names the id
    if not request.HasField("linux"):
        return  # nothing for Linux to change (containerd: WithResources(nil))
    wanted = convert(request.linux)
    with containers.lock(record.id):
        record = containers.current(record.id)
        path = containers.bundle(record.id) / "config.json"
        try:
            old_spec: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise runtime_errors.RuntimeFailure(
                f"update container {record.id}: read {path}: {e}"
            ) from None
        old = old_spec.setdefault("linux", {}).get("resources") or {}
        new_spec = copy.deepcopy(old_spec)
        new_spec["linux"]["resources"] = merge(old, wanted)
        atomic_write(str(path), json.dumps(new_spec).encode(), 0o644)
        if record.state not in (ContainerState.CREATED, ContainerState.RUNNING):
            log.info(
                "container %s is %s: resources saved, no cgroup to write",
                record.id,
                record.state.value,
                extra={"container": record.id},
            )
            return
        cgroups_path = str(new_spec["linux"].get("cgroupsPath", ""))
        try:
            warnings = _apply(cgroups_path, cgroup_sections(new_spec["linux"]["resources"], wanted))
        except CgroupError as e:
            atomic_write(str(path), json.dumps(old_spec).encode(), 0o644)
            _restore(cgroups_path, cgroup_sections(old, wanted), record.id)
            raise translate(e) from None
    for warning in warnings:
        log.warning("container %s: %s", record.id, warning, extra={"container": record.id})
    log.info("container %s resources updated", record.id, extra={"container": record.id})


def _apply(cgroups_path: str, sections: dict[str, Any]) -> list[str]:
    manager = open_manager(cgroups_path)
    if not manager.exists():
        return []  # gone with its processes (it has just exited)
    warnings: list[str] = manager.apply(sections)
    return warnings


def _restore(cgroups_path: str, sections: dict[str, Any], container_id: str) -> None:
    if not sections:
        return
    try:
        _apply(cgroups_path, sections)
    except CgroupError as e:
        log.warning(
            "container %s: restore the old resources: %s",
            container_id,
            e,
            extra={"container": container_id},
        )


# -- pure steps ----------------------------------------------------------------------------


def convert(resources: api_pb2.LinuxContainerResources) -> dict[str, Any]:
    """The request as OCI linux.resources sections, checked; only what it sets."""
    check(resources)
    out: dict[str, Any] = {}
    _resources(resources, out, host_facts(), FIELD)
    return out


def check(resources: api_pb2.LinuxContainerResources) -> None:
    """Refuse values the kernel would refuse, naming the field (zero means unset)."""
    period = resources.cpu_period
    if period and not CPU_PERIOD_US[0] <= period <= CPU_PERIOD_US[1]:
        _fail("cpu_period", f"{period} is not in {CPU_PERIOD_US[0]}-{CPU_PERIOD_US[1]} µs")
    quota = resources.cpu_quota
    if quota and quota != -1 and quota < MIN_CPU_QUOTA_US:
        _fail("cpu_quota", f"{quota} is below {MIN_CPU_QUOTA_US} µs (and not -1, unlimited)")
    shares = resources.cpu_shares
    if shares and not CPU_SHARES[0] <= shares <= CPU_SHARES[1]:
        _fail("cpu_shares", f"{shares} is not in {CPU_SHARES[0]}-{CPU_SHARES[1]}")
    for name in ("cpuset_cpus", "cpuset_mems"):
        value = getattr(resources, name)
        if value and not valid_cpuset(value):
            _fail(name, f"{value!r} is not a list such as 0-2,4")


def valid_cpuset(value: str) -> bool:
    """Whether `value` is a cpuset list ("0", "0-3", "0,2-5"), each range ascending."""
    if not _CPUSET.fullmatch(value):
        return False
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            return False
    return True


def merge(old: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """`old` linux.resources with the sections of `wanted` laid over it: cpu and memory
    key by key, hugepage limits by page size, unified key by key. `old` is unchanged."""
    merged = copy.deepcopy(old)
    for section in ("cpu", "memory"):
        if section in wanted:
            merged[section] = {**(merged.get(section) or {}), **wanted[section]}
    if "hugepageLimits" in wanted:
        sizes = {limit["pageSize"] for limit in wanted["hugepageLimits"]}
        kept = [h for h in merged.get("hugepageLimits") or [] if h.get("pageSize") not in sizes]
        merged["hugepageLimits"] = kept + list(wanted["hugepageLimits"])
    if "unified" in wanted:
        merged["unified"] = {**(merged.get("unified") or {}), **wanted["unified"]}
    return merged


def cgroup_sections(resources: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """What to write to the cgroup: the sections of `resources` that `wanted` touches
    (cpu and memory whole; the hugepage sizes and unified keys `wanted` names)."""
    out: dict[str, Any] = {}
    for section in ("cpu", "memory"):
        if section in wanted and resources.get(section):
            out[section] = resources[section]
    if "hugepageLimits" in wanted:
        sizes = {limit["pageSize"] for limit in wanted["hugepageLimits"]}
        limits = [h for h in resources.get("hugepageLimits") or [] if h.get("pageSize") in sizes]
        if limits:
            out["hugepageLimits"] = limits
    if "unified" in wanted:
        unified = resources.get("unified") or {}
        kept = {key: unified[key] for key in wanted["unified"] if key in unified}
        if kept:
            out["unified"] = kept
    return out


def translate(error: CgroupError) -> Exception:
    """A refused cgroup write as the CRI error naming the request field."""
    message = str(error)
    field = next((f for fragment, f in _FIELDS_BY_FILE if fragment in message), "")
    where = f"{FIELD}.{field}" if field else FIELD
    if error.errno == errno.EBUSY:
        return runtime_errors.InvalidState(f"{where}: {message}")
    if error.errno in (None, errno.EINVAL, errno.ERANGE, errno.ENOENT, errno.EOVERFLOW):
        return InvalidArgument(f"{where}: {message}")
    return error


def container_resources(spec: dict[str, Any]) -> api_pb2.ContainerResources:
    """ContainerStatus.resources from a config.json (containerd copyResourcesToStatus)."""
    linux = api_pb2.LinuxContainerResources()
    adj = (spec.get("process") or {}).get("oomScoreAdj")
    if isinstance(adj, int):
        linux.oom_score_adj = adj
    resources = (spec.get("linux") or {}).get("resources") or {}
    cpu = resources.get("cpu") or {}
    linux.cpu_period = int(cpu.get("period") or 0)
    linux.cpu_quota = int(cpu.get("quota") or 0)
    linux.cpu_shares = int(cpu.get("shares") or 0)
    linux.cpuset_cpus = str(cpu.get("cpus") or "")
    linux.cpuset_mems = str(cpu.get("mems") or "")
    memory = resources.get("memory") or {}
    linux.memory_limit_in_bytes = int(memory.get("limit") or 0)
    linux.memory_swap_limit_in_bytes = int(memory.get("swap") or 0)
    for hugepage in resources.get("hugepageLimits") or []:
        linux.hugepage_limits.add(
            page_size=str(hugepage.get("pageSize", "")), limit=int(hugepage.get("limit") or 0)
        )
    linux.unified.update({str(k): str(v) for k, v in (resources.get("unified") or {}).items()})
    return api_pb2.ContainerResources(linux=linux)


def _fail(field: str, message: str) -> NoReturn:
    raise InvalidArgument(f"{FIELD}.{field}: {message}")
