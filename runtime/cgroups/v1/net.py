"""cgroup v1 net_cls and net_prio controllers: OCI `linux.resources.network`.

Both are often not mounted (not on the development machine): the manager
then returns a warning instead of calling these.
"""

from __future__ import annotations

from runtime.cgroups import convert, fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def apply_classid(cgroup_dir: str, network: Mapping[str, object]) -> list[str]:
    class_id = convert.get_int(network, "classID", "network")
    if class_id is not None:
        fs.write_file(cgroup_dir, "net_cls.classid", str(class_id))
    return []


def apply_priorities(cgroup_dir: str, network: Mapping[str, object]) -> list[str]:
    for entry in convert.get_objects(network, "priorities", "network"):
        name = convert.get_str(entry, "name", "network.priorities")
        priority = convert.get_int(entry, "priority", "network.priorities")
        if name and priority is not None:
            fs.write_file(cgroup_dir, "net_prio.ifpriomap", f"{name} {priority}")
    return []
