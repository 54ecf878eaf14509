"""Users and groups: the rootfs's /etc/passwd and /etc/group as the caller hands them
over (:class:`UserDB`, parsed as runc's user package does), the container's uid, gid
and additional gids from the request or the image's USER (containerd ``WithUser``,
``WithAdditionalGIDs``, the supplemental groups policy), and the kubelet's
``runAsNonRoot`` check on the result. It does not read files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cri.api import api_pb2
from cri.oci_spec.inputs import _SC, _fail
from images.metadata import Image

MAX_ID = 2**31 - 1  # runc (and containerd) refuse uids and gids above MaxInt32

_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserDB:
    """The rootfs's /etc/passwd and /etc/group; ``None`` when the file is absent."""

    passwd: tuple[PasswdEntry, ...] | None = None
    group: tuple[GroupEntry, ...] | None = None

    @classmethod
    def parse(cls, passwd: str | None, group: str | None) -> UserDB:
        """Parse file contents as runc's user package does: fields split on ``:``,
        surrounding blanks trimmed, blank lines (and here ``#`` comments) skipped, a
        number that does not parse read as 0."""
        users = None
        if passwd is not None:
            users = tuple(
                PasswdEntry(f[0], _number(f[2]), _number(f[3])) for f in _records(passwd, 7)
            )
        groups = None
        if group is not None:
            groups = tuple(
                GroupEntry(f[0], _number(f[2]), tuple(m for m in f[3].split(",") if m))
                for f in _records(group, 4)
            )
        return cls(users, groups)

    def user_by_name(self, name: str) -> PasswdEntry | None:
        return next((u for u in self.passwd or () if u.name == name), None)

    def user_by_uid(self, uid: int) -> PasswdEntry | None:
        return next((u for u in self.passwd or () if u.uid == uid), None)

    def group_by_name(self, name: str) -> GroupEntry | None:
        return next((g for g in self.group or () if g.name == name), None)

    def supplementary_gids(self, username: str) -> list[int]:
        """Groups listing ``username`` as a member, except its namesake group."""
        return [g.gid for g in self.group or () if g.name != username and username in g.members]


def _records(text: str, width: int) -> list[list[str]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            fields = line.split(":")
            out.append(fields + [""] * (width - len(fields)))
    return out


def _number(text: str) -> int:
    return int(text) if _INT.fullmatch(text) else 0


def _container_user(
    sc: api_pb2.LinuxContainerSecurityContext, image: Image, image_name: str, users: UserDB
) -> tuple[int, int, list[int], bool]:
    """uid, gid, additional gids, and whether the user came from the image.

    containerd: ``WithUser`` on the request's user (``run_as_username`` or
    ``run_as_user``, with ``run_as_group``), else the image's USER; then, with the
    Merge policy, ``WithAdditionalGIDs`` (the groups of /etc/group listing the user)
    and the supplemental groups; with Strict, only the latter.
    """
    supplemental = _supplemental_groups(sc.supplemental_groups, f"{_SC}.supplemental_groups")
    userstr, where = _user_string(
        sc.run_as_username,
        sc.run_as_user.value if sc.HasField("run_as_user") else None,
        sc.run_as_group.value if sc.HasField("run_as_group") else None,
    )
    from_image = not userstr
    if from_image:
        userstr, where = image.config.user, f"image {image_name}: config.User"
    uid = gid = 0
    gids: set[int] = set()
    if userstr:
        uid, gid = _resolve_user(userstr, users, where)
        gids.add(gid)
    policy = sc.supplemental_groups_policy
    if policy == api_pb2.Merge:
        if sc.run_as_username:
            name = sc.run_as_username
        elif sc.HasField("run_as_user"):
            name = str(sc.run_as_user.value)
        else:
            name = image.config.user.partition(":")[0] or "0"
        gids.add(gid)
        gids.update(_image_groups(name, users))
    elif policy != api_pb2.Strict:
        _fail(f"{_SC}.supplemental_groups_policy", f"unknown policy {policy}")
    gids.update(supplemental)
    return uid, gid, sorted(gids), from_image


def _user_string(username: str, uid: int | None, gid: int | None) -> tuple[str, str]:
    """containerd ``GenerateUserString``: ``user[:group]`` from the request, and the
    field it came from."""
    user, where = "", ""
    if uid is not None:
        user, where = str(uid), f"{_SC}.run_as_user"
    if username:
        user, where = username, f"{_SC}.run_as_username"
    if not user:
        if gid is not None:
            _fail(f"{_SC}.run_as_group", f"group {gid} is specified without a user")
        return "", ""
    if gid is not None:
        return f"{user}:{gid}", where
    return user, where


def _resolve_user(userstr: str, users: UserDB, where: str) -> tuple[int, int]:
    """containerd ``WithUser``: ``uid`` (gid from /etc/passwd, else 0), ``name`` (uid
    and gid from /etc/passwd), ``uid:gid`` as given, ``name:group`` and the mixed forms
    looked up by name."""
    parts = userstr.split(":")
    if len(parts) == 1:
        uid = _id(parts[0], userstr, "uid", where)
        if uid is None:
            entry = _passwd_entry(users, userstr, where)
            return entry.uid, entry.gid
        found = users.user_by_uid(uid)
        return uid, found.gid if found else 0
    if len(parts) != 2:
        _fail(where, f"invalid user {userstr!r}")
    uid = _id(parts[0], userstr, "uid", where)
    gid = _id(parts[1], userstr, "gid", where)
    if uid is None and parts[0]:
        uid = _passwd_entry(users, parts[0], where).uid
    if gid is None and parts[1]:
        if users.group is None:
            _fail(where, f"group {parts[1]!r}: the image has no /etc/group")
        group = users.group_by_name(parts[1])
        if group is None:
            _fail(where, f"group {parts[1]!r} not found in the image's /etc/group")
        gid = group.gid
    return uid or 0, gid or 0


def _id(text: str, userstr: str, kind: str, where: str) -> int | None:
    """A numeric id (Go ``strconv.Atoi``), None for a name; out of range is an error."""
    if not _INT.fullmatch(text):
        return None
    value = int(text)
    if not 0 <= value <= MAX_ID:
        _fail(where, f"invalid user {userstr!r}: {kind} out of range")
    return value


def _passwd_entry(users: UserDB, name: str, where: str) -> PasswdEntry:
    if users.passwd is None:
        _fail(where, f"user {name!r}: the image has no /etc/passwd")
    entry = users.user_by_name(name)
    if entry is None:
        _fail(where, f"user {name!r} not found in the image's /etc/passwd")
    return entry


def _image_groups(user: str, users: UserDB) -> list[int]:
    """oci ``WithAdditionalGIDs``: a numeric user is named through /etc/passwd (none
    found: no groups); then the groups of /etc/group that list that name."""
    if _INT.fullmatch(user):
        entry = users.user_by_uid(int(user))
        if entry is None:
            return []
        user = entry.name
    return users.supplementary_gids(user)


def _supplemental_groups(groups: Sequence[int], where: str) -> list[int]:
    for i, gid in enumerate(groups):
        if not 0 <= gid < 2**32:
            _fail(f"{where}[{i}]", f"gid {gid} out of range")
    return list(groups)


def _user(uid: int, gid: int, gids: Sequence[int]) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    if gids:
        user["additionalGids"] = list(gids)
    return user


def _check_non_root(
    sc: api_pb2.LinuxContainerSecurityContext, uid: int, *, from_image: bool
) -> None:
    """The kubelet's ``verifyRunAsNonRoot``, on the resolved uid."""
    if uid != 0:
        return
    if from_image:
        _fail("run_as_non_root", "image will run as root")
    if sc.run_as_username:
        _fail("run_as_non_root", f"run_as_username {sc.run_as_username!r} runs as root")
    _fail("run_as_non_root", "run_as_user 0 breaks the non-root policy")
