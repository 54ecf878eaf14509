"""The CRI server's record of pod sandboxes and containers, persisted so a restarted
server re-adopts them.

Owns: one `SandboxRecord` or `ContainerRecord` per id, in memory and on disk; the
reserved names (containerd's name index); CRI List filtering and unique-prefix id
resolution; the conversion of records to the List responses' messages. Does not own:
network namespaces, processes, logs or images (the servicers, the supervisor and
cri/network do); it performs no I/O beyond its own state directory:

    <state_dir>/sandboxes/<id>.json    one JSON object per sandbox (fields of SandboxRecord)
    <state_dir>/containers/<id>.json   one JSON object per container

Rules a reader must know:
- Every change is written first (temporary file in the same directory, fsync, rename)
  and applied in memory after, so memory never holds what the disk lacks. A
  construction on the same directory loads every readable record, deletes temporary
  files a crashed writer left, and re-reserves the names.
- Names are reserved, not stored: the servicer reserves the name key
  (`sandbox_name_key`, `container_name_key`) before it creates anything, releases it
  if creation fails, and removing a record releases the names its id holds.
- `get_*` and `resolve_id` accept an id or a unique prefix of one (as crictl passes);
  `update_*` and `remove_*` take full ids. Removing an unknown id does nothing, so
  Stop/Remove RPCs are idempotent.
- Records are immutable; `update_*` applies a function to the current record under
  the lock, so concurrent updates of one record never lose each other's changes.

Concurrency: one lock guards memory and disk; every method is safe from any thread.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from cri.api import api_pb2
from cri.errors import NameTaken
from runtime import errors as runtime_errors
from runtime.state import atomic_write

log = logging.getLogger(__name__)

SANDBOXES = "sandboxes"
CONTAINERS = "containers"

# Ids become file names: no separators, no leading dot (temporary files start with one).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class NotFound(runtime_errors.NotFound):
    """No sandbox or container with that id (or id prefix). A runtime NotFound, so
    cri/errors.py answers NOT_FOUND."""


class AmbiguousId(NotFound):
    """An id prefix matches more than one sandbox or container; the message lists them."""


class Kind(Enum):
    SANDBOX = "sandbox"
    CONTAINER = "container"


class SandboxState(Enum):
    READY = "READY"
    NOTREADY = "NOTREADY"

    def to_cri(self) -> api_pb2.PodSandboxState:
        return api_pb2.SANDBOX_READY if self is SandboxState.READY else api_pb2.SANDBOX_NOTREADY


class ContainerState(Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    EXITED = "EXITED"
    UNKNOWN = "UNKNOWN"

    def to_cri(self) -> api_pb2.ContainerState:
        return _CONTAINER_STATES[self]


_CONTAINER_STATES = {
    ContainerState.CREATED: api_pb2.CONTAINER_CREATED,
    ContainerState.RUNNING: api_pb2.CONTAINER_RUNNING,
    ContainerState.EXITED: api_pb2.CONTAINER_EXITED,
    ContainerState.UNKNOWN: api_pb2.CONTAINER_UNKNOWN,
}


def _freeze(record: Any) -> None:
    """Copy the label and annotation maps into read-only views (frozen means frozen)."""
    for name in ("labels", "annotations"):
        object.__setattr__(record, name, MappingProxyType(dict(getattr(record, name))))


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxRecord:
    id: str
    name: str
    uid: str
    namespace: str
    attempt: int
    state: SandboxState
    created_at: int  # ns since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    netns_path: str = ""
    ip: str = ""
    cgroup_parent: str = ""
    log_directory: str = ""
    runtime_handler: str = ""
    config: bytes = b""  # the RunPodSandbox request's PodSandboxConfig, serialized

    def __post_init__(self) -> None:
        _freeze(self)

    def metadata(self) -> api_pb2.PodSandboxMetadata:
        return api_pb2.PodSandboxMetadata(
            name=self.name, uid=self.uid, namespace=self.namespace, attempt=self.attempt
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: ContainerState
    created_at: int  # ns since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    image: str = ""  # the image as the kubelet named it (ContainerConfig.image.image)
    image_ref: str = ""  # the resolved reference (repo@digest) the rootfs came from
    image_id: str = ""  # the image id (config digest)
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    log_path: str = ""
    config: bytes = b""  # the CreateContainer request's ContainerConfig, serialized

    def __post_init__(self) -> None:
        _freeze(self)

    def metadata(self) -> api_pb2.ContainerMetadata:
        return api_pb2.ContainerMetadata(name=self.name, attempt=self.attempt)


Record = TypeVar("Record", SandboxRecord, ContainerRecord)


def sandbox_name_key(metadata: api_pb2.PodSandboxMetadata) -> str:
    """containerd's sandbox name: `<name>_<namespace>_<uid>_<attempt>`."""
    return f"{metadata.name}_{metadata.namespace}_{metadata.uid}_{metadata.attempt}"


def container_name_key(
    metadata: api_pb2.ContainerMetadata, sandbox: api_pb2.PodSandboxMetadata
) -> str:
    """containerd's container name: `<name>_<sandbox name>_<namespace>_<uid>_<attempt>`."""
    return f"{metadata.name}_{sandbox.name}_{sandbox.namespace}_{sandbox.uid}_{metadata.attempt}"


def to_pod_sandbox(record: SandboxRecord) -> api_pb2.PodSandbox:
    """The ListPodSandbox item for `record`."""
    return api_pb2.PodSandbox(
        id=record.id,
        metadata=record.metadata(),
        state=record.state.to_cri(),
        created_at=record.created_at,
        labels=dict(record.labels),
        annotations=dict(record.annotations),
        runtime_handler=record.runtime_handler,
    )


def to_container(record: ContainerRecord) -> api_pb2.Container:
    """The ListContainers item for `record`; the ImageSpec is the one the config asked
    for (as containerd answers), or just the image name without a config."""
    image = api_pb2.ImageSpec(image=record.image)
    if record.config:
        config = api_pb2.ContainerConfig.FromString(record.config)
        if config.HasField("image"):
            image = config.image
    return api_pb2.Container(
        id=record.id,
        pod_sandbox_id=record.sandbox_id,
        metadata=record.metadata(),
        image=image,
        image_ref=record.image_ref,
        state=record.state.to_cri(),
        created_at=record.created_at,
        labels=dict(record.labels),
        annotations=dict(record.annotations),
        image_id=record.image_id,
    )


def _to_json(record: SandboxRecord | ContainerRecord) -> bytes:
    value: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        item = getattr(record, f.name)
        if isinstance(item, Enum):
            item = item.value
        elif isinstance(item, bytes):
            item = base64.b64encode(item).decode()
        elif isinstance(item, Mapping):
            item = dict(item)
        value[f.name] = item
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sandbox_from_json(data: bytes) -> SandboxRecord:
    value = json.loads(data)
    value["state"] = SandboxState(value["state"])
    value["config"] = base64.b64decode(value["config"], validate=True)
    return SandboxRecord(**value)


def _container_from_json(data: bytes) -> ContainerRecord:
    value = json.loads(data)
    value["state"] = ContainerState(value["state"])
    value["config"] = base64.b64decode(value["config"], validate=True)
    return ContainerRecord(**value)


def _labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class CriStore:
    """Sandboxes and containers of one CRI server, persisted under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._sandboxes: dict[str, SandboxRecord] = {}
        self._containers: dict[str, ContainerRecord] = {}
        # Per kind: name key -> id, and id -> name key.
        self._names: dict[Kind, dict[str, str]] = {kind: {} for kind in Kind}
        self._held: dict[Kind, dict[str, str]] = {kind: {} for kind in Kind}
        for directory in (self._dir(Kind.SANDBOX), self._dir(Kind.CONTAINER)):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._load()

    # -- names -------------------------------------------------------------------

    def reserve_name(self, kind: Kind, name_key: str, id: str) -> None:
        """Reserve `name_key` for `id`; again for the same id is a no-op."""
        with self._lock:
            self._reserve(kind, name_key, id)

    def release_name(self, kind: Kind, name_key: str) -> None:
        """Release `name_key`; an unreserved one is a no-op."""
        with self._lock:
            holder = self._names[kind].pop(name_key, None)
            if holder is not None:
                self._held[kind].pop(holder, None)

    def _reserve(self, kind: Kind, name_key: str, id: str) -> None:
        holder = self._names[kind].get(name_key)
        if holder is not None and holder != id:
            raise NameTaken(f"{kind.value} name {name_key!r} is reserved for {holder}")
        held = self._held[kind].get(id)
        if held is not None and held != name_key:
            raise NameTaken(f"{kind.value} {id} already holds name {held!r}")
        self._names[kind][name_key] = id
        self._held[kind][id] = name_key

    def _release_id(self, kind: Kind, id: str) -> None:
        name_key = self._held[kind].pop(id, None)
        if name_key is not None:
            self._names[kind].pop(name_key, None)

    # -- sandboxes ---------------------------------------------------------------

    def add_sandbox(self, record: SandboxRecord) -> None:
        """Persist a new sandbox; its id must be new."""
        with self._lock:
            if record.id in self._sandboxes:
                raise NameTaken(f"add sandbox {record.id}: exists already")
            self._write(Kind.SANDBOX, record)
            self._sandboxes[record.id] = record

    def update_sandbox(
        self, sandbox_id: str, change: Callable[[SandboxRecord], SandboxRecord]
    ) -> SandboxRecord:
        """Replace the sandbox with `change(current)`, atomically; returns the new record."""
        with self._lock:
            current = self._sandboxes.get(sandbox_id)
            if current is None:
                raise NotFound(f"update sandbox {sandbox_id}: not found")
            record = change(current)
            if record.id != sandbox_id:
                raise ValueError(f"update sandbox {sandbox_id}: the id changed to {record.id}")
            self._write(Kind.SANDBOX, record)
            self._sandboxes[sandbox_id] = record
            return record

    def get_sandbox(self, id_or_prefix: str) -> SandboxRecord:
        with self._lock:
            return self._sandboxes[self._resolve(Kind.SANDBOX, id_or_prefix)]

    def remove_sandbox(self, sandbox_id: str) -> None:
        """Forget the sandbox and release its name; an unknown id is a no-op."""
        with self._lock:
            self._unlink(Kind.SANDBOX, sandbox_id)
            self._sandboxes.pop(sandbox_id, None)
            self._release_id(Kind.SANDBOX, sandbox_id)

    def list_sandboxes(self, filter: api_pb2.PodSandboxFilter | None = None) -> list[SandboxRecord]:
        """The sandboxes `filter` selects (CRI semantics), oldest first."""
        with self._lock:
            records = list(self._sandboxes.values())
            if filter is not None and filter.id:
                wanted = self._try_resolve(Kind.SANDBOX, filter.id)
                records = [r for r in records if r.id == wanted]
        if filter is not None:
            if filter.HasField("state"):
                records = [r for r in records if r.state.to_cri() == filter.state.state]
            records = [r for r in records if _labels_match(r.labels, filter.label_selector)]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- containers --------------------------------------------------------------

    def add_container(self, record: ContainerRecord) -> None:
        """Persist a new container of an existing sandbox; its id must be new."""
        with self._lock:
            if record.id in self._containers:
                raise NameTaken(f"add container {record.id}: exists already")
            if record.sandbox_id not in self._sandboxes:
                raise NotFound(f"add container {record.id}: sandbox {record.sandbox_id} not found")
            self._write(Kind.CONTAINER, record)
            self._containers[record.id] = record

    def update_container(
        self, container_id: str, change: Callable[[ContainerRecord], ContainerRecord]
    ) -> ContainerRecord:
        """Replace the container with `change(current)`, atomically; returns the new record."""
        with self._lock:
            current = self._containers.get(container_id)
            if current is None:
                raise NotFound(f"update container {container_id}: not found")
            record = change(current)
            if record.id != container_id:
                raise ValueError(f"update container {container_id}: the id changed to {record.id}")
            self._write(Kind.CONTAINER, record)
            self._containers[container_id] = record
            return record

    def get_container(self, id_or_prefix: str) -> ContainerRecord:
        with self._lock:
            return self._containers[self._resolve(Kind.CONTAINER, id_or_prefix)]

    def remove_container(self, container_id: str) -> None:
        """Forget the container and release its name; an unknown id is a no-op."""
        with self._lock:
            self._unlink(Kind.CONTAINER, container_id)
            self._containers.pop(container_id, None)
            self._release_id(Kind.CONTAINER, container_id)

    def list_containers(
        self, filter: api_pb2.ContainerFilter | None = None
    ) -> list[ContainerRecord]:
        """The containers `filter` selects (CRI semantics), oldest first. The id and the
        sandbox id may be unique prefixes; one that matches nothing, or more than one,
        selects nothing (an orphan's sandbox id still matches exactly)."""
        with self._lock:
            records = list(self._containers.values())
            if filter is not None and filter.id:
                wanted = self._try_resolve(Kind.CONTAINER, filter.id)
                records = [r for r in records if r.id == wanted]
            if filter is not None and filter.pod_sandbox_id:
                sandbox = self._try_resolve(Kind.SANDBOX, filter.pod_sandbox_id)
                sandbox = sandbox or filter.pod_sandbox_id
                records = [r for r in records if r.sandbox_id == sandbox]
        if filter is not None:
            if filter.HasField("state"):
                records = [r for r in records if r.state.to_cri() == filter.state.state]
            records = [r for r in records if _labels_match(r.labels, filter.label_selector)]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- ids ---------------------------------------------------------------------

    def resolve_id(self, kind: Kind, id_or_prefix: str) -> str:
        """The full id of the one `kind` whose id is `id_or_prefix` or starts with it.

        Raises NotFound if none does and AmbiguousId if several do."""
        with self._lock:
            return self._resolve(kind, id_or_prefix)

    def _ids(self, kind: Kind) -> Iterable[str]:
        return self._sandboxes if kind is Kind.SANDBOX else self._containers

    def _resolve(self, kind: Kind, prefix: str) -> str:
        ids = self._ids(kind)
        if not prefix:
            raise NotFound(f"{kind.value} id is empty")
        if prefix in ids:
            return prefix
        matches = sorted(i for i in ids if i.startswith(prefix))
        if not matches:
            raise NotFound(f"{kind.value} {prefix} not found")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise AmbiguousId(
                f"{kind.value} id prefix {prefix!r} is ambiguous: "
                f"it matches {len(matches)} ids ({shown})"
            )
        return matches[0]

    def _try_resolve(self, kind: Kind, prefix: str) -> str | None:
        try:
            return self._resolve(kind, prefix)
        except NotFound:
            return None

    # -- disk --------------------------------------------------------------------

    def _dir(self, kind: Kind) -> Path:
        return self.state_dir / (SANDBOXES if kind is Kind.SANDBOX else CONTAINERS)

    def _path(self, kind: Kind, id: str) -> Path:
        return self._dir(kind) / f"{id}.json"

    def _write(self, kind: Kind, record: SandboxRecord | ContainerRecord) -> None:
        if not _ID.fullmatch(record.id):
            raise ValueError(f"save {kind.value}: invalid id {record.id!r}")
        log.debug("save %s %s", kind.value, record.id, extra={"id": record.id})
        atomic_write(str(self._path(kind, record.id)), _to_json(record), 0o600)

    def _unlink(self, kind: Kind, id: str) -> None:
        if not _ID.fullmatch(id):
            return  # never saved, so nothing to remove
        log.debug("remove %s %s", kind.value, id, extra={"id": id})
        self._path(kind, id).unlink(missing_ok=True)

    def _load(self) -> None:
        """Read every record (sandboxes first) and re-reserve the names."""
        for record in self._read(Kind.SANDBOX, _sandbox_from_json):
            self._sandboxes[record.id] = record
            self._reserve_on_load(Kind.SANDBOX, sandbox_name_key(record.metadata()), record.id)
        for container in self._read(Kind.CONTAINER, _container_from_json):
            self._containers[container.id] = container
            sandbox = self._sandboxes.get(container.sandbox_id)
            if sandbox is None:
                log.warning(
                    "container %s: sandbox %s not found, its name stays free",
                    container.id,
                    container.sandbox_id,
                    extra={"id": container.id},
                )
                continue
            key = container_name_key(container.metadata(), sandbox.metadata())
            self._reserve_on_load(Kind.CONTAINER, key, container.id)
        log.debug(
            "loaded %d sandboxes, %d containers from %s",
            len(self._sandboxes),
            len(self._containers),
            self.state_dir,
        )

    def _reserve_on_load(self, kind: Kind, name_key: str, id: str) -> None:
        try:
            self._reserve(kind, name_key, id)
        except NameTaken as e:
            log.warning("load %s %s: %s", kind.value, id, e, extra={"id": id})

    def _read(self, kind: Kind, parse: Callable[[bytes], Record]) -> list[Record]:
        """Every readable record of `kind`; stale temporary files are deleted and an
        unreadable record is logged and skipped (left in place for a human)."""
        records = []
        for path in sorted(self._dir(kind).iterdir()):
            if path.name.startswith("."):
                if path.name.endswith(".tmp"):
                    log.info("remove stale temporary file %s", path)
                    path.unlink(missing_ok=True)
                continue
            if path.suffix != ".json":
                continue
            try:
                record = parse(path.read_bytes())
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.warning("skip unreadable %s record %s: %s", kind.value, path, e)
                continue
            if f"{record.id}.json" != path.name:
                log.warning("skip %s record %s: it holds id %s", kind.value, path, record.id)
                continue
            records.append(record)
        return records
