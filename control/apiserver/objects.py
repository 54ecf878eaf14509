"""Objects in the store: the generic registry behind every resource's verbs (the
kube-apiserver's `registry/generic`), over one `control.storage.Backend`.

Objects are JSON documents stored without `metadata.resourceVersion`: that is the
key's mod revision, set on every read. `create` fills the server-owned metadata
(uid, creationTimestamp, generation, a name from generateName); `update` and `patch`
are compare-and-swap loops on the mod revision (`guaranteed_update`): an update that
names a stale resourceVersion is a 409 Conflict; a patch retries on a concurrent
write. A change to `spec` bumps `generation`. A PUT on a resource with a status
subresource keeps the stored status; a PUT on `/status` changes only the status.

Deletion (`delete`): an object with finalizers, or a pod bound to a node deleted
with a grace period, gets `deletionTimestamp` (and `deletionGracePeriodSeconds`)
and stays until nothing holds it: no finalizers (an update that removes the last
one deletes it) and no grace period (the kubelet deletes the pod again with grace
0; a later delete may only shorten the grace period). `propagationPolicy`
Foreground/Orphan add the `foregroundDeletion`/`orphan` finalizers for the garbage
collector, as the real API does.

Watch: storage events become ADDED/MODIFIED/DELETED; with selectors an object that
starts or stops matching is ADDED or DELETED, as the watch cache does. `rv` "" or
"0" first sends the current objects as ADDED.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import datetime
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

from control.apiserver import errors
from control.apiserver.errors import Target
from control.apiserver.kinds import (
    DEFAULT_TOLERATION_SECONDS,
    IMMORTAL_NAMESPACES,
    default_toleration_seconds,
    kind_for,
)
from control.apiserver.resources import ResourceType
from control.apiserver.selectors import FieldSelector, LabelSelector, fields_of
from control.storage import Backend, Event, EventType, KeyValue
from control.storage import errors as storage_errors

Object = dict[str, Any]

# generateName: 5 characters of the alphabet the real API uses (no vowels, no 0/1/3),
# after at most 58 of the prefix, so that a generated name is a valid DNS label.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATE_PREFIX = 58
_MAX_RETRIES = 16


def now_rfc3339(clock: Callable[[], float]) -> str:
    moment = datetime.datetime.fromtimestamp(int(clock()), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Selectors:
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    @property
    def everything(self) -> bool:
        """Whether every object matches (no requirements at all)."""
        return (self.labels is None or self.labels.empty) and (
            self.fields is None or not self.fields.requirements
        )

    def match(self, resource: ResourceType, obj: Object) -> bool:
        meta = obj.get("metadata") or {}
        if self.labels is not None and not self.labels.matches(meta.get("labels") or {}):
            return False
        return self.fields is None or self.fields.matches(fields_of(resource.kind, obj))


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Object  # shared with other watches: read, never change
    encoded: bytes | None = None  # `object` as JSON, when known


class _SharedDecodes:
    """The objects of recent stored changes, decoded and encoded once for all the
    watches that see them: every watcher decoded every change itself and the server
    encoded it again for each (a pod's change reaches the kubelet, the scheduler, a
    handful of controllers). Bounded: the most recent `size` changes."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[tuple[str, int], tuple[Object, bytes]] = (
            collections.OrderedDict()
        )

    def get(self, kv: KeyValue) -> tuple[Object, bytes]:
        key = (kv.key, int(kv.mod_revision))
        with self._lock:
            found = self._items.get(key)
        if found is not None:
            return found
        obj = _decode(kv)
        made = (obj, json.dumps(obj).encode())
        with self._lock:
            made = self._items.setdefault(key, made)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return made


_shared = _SharedDecodes()


def _decode(kv: KeyValue) -> Object:
    obj: Object = json.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def _encode(obj: Object) -> bytes:
    stored = copy.deepcopy(obj)
    stored.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(stored, separators=(",", ":"), sort_keys=False).encode()


@contextlib.contextmanager
def _decoding(resource: ResourceType) -> Iterator[None]:
    """A field of the wrong JSON type (a string for a list, ...) that defaulting or
    validation trips over is the 400 the real API's decoder gives, not a 500."""
    try:
        yield
    except (TypeError, AttributeError) as e:
        raise errors.bad_request(
            f'{resource.kind} in version "{resource.version}" cannot be handled as a '
            f"{resource.kind}: a field has the wrong type ({e})"
        ) from None


def _content(obj: Object) -> Object:
    """What is stored of an object, to compare two (in any key order)."""
    stored = copy.deepcopy(obj)
    stored.get("metadata", {}).pop("resourceVersion", None)
    return stored


class Registry:
    def __init__(
        self, backend: Backend, *, clock: Callable[[], float],
        not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
    ) -> None:  # fmt: skip
        self.backend = backend
        self.clock = clock
        self.not_ready_toleration_seconds = not_ready_toleration_seconds
        self.unreachable_toleration_seconds = unreachable_toleration_seconds

    # -- reads --------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> Object:
        target = Target(resource.plural, name, resource.group)
        try:
            return _decode(self.backend.get(resource.key(namespace, name)))
        except storage_errors.StorageError as e:
            raise errors.from_storage(e, target) from None

    def list(
        self,
        resource: ResourceType,
        namespace: str,
        *,
        selectors: Selectors,
        limit: int = 0,
        continue_token: str = "",
    ) -> Object:
        """A <Kind>List; with `limit`, a page and `metadata.continue` for the next."""
        limit = max(limit, 0)  # as upstream: no limit unless it is positive
        revision, after = 0, None
        if continue_token:
            revision, after = decode_continue(continue_token)
        items: list[Object] = []
        more = False
        try:
            while True:
                page = self.backend.list(
                    resource.prefix(namespace), revision=revision,
                    limit=max(limit - len(items), 0) if limit else 0, continue_from=after,
                )  # fmt: skip
                revision = page.revision
                for kv in page.items:
                    obj = _decode(kv)
                    if selectors.match(resource, obj):
                        items.append(obj)
                    after = kv.key
                more = page.more
                if not limit or len(items) >= limit or not more:
                    break
        except storage_errors.Compacted:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter."
            ) from None
        except storage_errors.StorageError as e:
            raise errors.from_storage(e, Target(resource.plural, "", resource.group)) from None
        metadata: Object = {"resourceVersion": str(revision)}
        if more and after is not None:
            metadata["continue"] = encode_continue(revision, after)
        return {
            "kind": resource.list_kind_name(), "apiVersion": resource.api_version,
            "metadata": metadata, "items": items,
        }  # fmt: skip

    # -- writes -------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, obj: Object) -> Object:
        kind = kind_for(resource)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        self._check_identity(resource, obj, namespace)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"])[:_MAX_GENERATE_PREFIX] + "".join(
                secrets.choice(_NAME_ALPHABET) for _ in range(5)
            )
        name = str(meta.get("name") or "")
        target = Target(resource.plural, name, resource.group)
        if resource.namespaced:
            meta["namespace"] = namespace
            self._namespace_exists(namespace)
        else:
            meta.pop("namespace", None)
        for server_owned in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "selfLink",
                             "managedFields"):  # fmt: skip
            meta.pop(server_owned, None)
        with _decoding(resource):
            kind.default(obj)
            if resource.kind == "Pod" and not resource.group:  # admission, on create only
                default_toleration_seconds(
                    obj, not_ready=self.not_ready_toleration_seconds,
                    unreachable=self.unreachable_toleration_seconds,
                )  # fmt: skip
            causes = kind.validate(obj)
        if causes:
            raise errors.invalid(resource.kind, target, causes)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self.clock)
        if "spec" in obj:
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        if "status" in resource.subresources:
            kind.initial_status(obj)
        try:
            revision = self.backend.create(resource.key(namespace, name), _encode(obj))
        except storage_errors.StorageError as e:
            raise errors.from_storage(e, target) from None
        meta["resourceVersion"] = str(revision)
        return obj

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        obj: Object,
        *,
        subresource: str = "",
    ) -> Object:
        """PUT: the whole object (or its status); a resourceVersion in it must be the
        current one."""
        target = Target(resource.plural, name, resource.group)
        if not isinstance(obj.get("metadata"), dict):
            raise errors.bad_request("metadata must be an object")
        self._check_identity(resource, obj, namespace, name)
        expected = obj["metadata"].get("resourceVersion") or ""
        if expected and not str(expected).isdigit():
            raise errors.bad_request(f"invalid resourceVersion {expected!r}")

        def change(current: Object) -> Object:
            if expected and str(expected) != current["metadata"]["resourceVersion"]:
                raise errors.conflict(
                    target, "the object has been modified; please apply your changes to the "
                    "latest version and try again",
                )  # fmt: skip
            return self._merge_update(resource, current, copy.deepcopy(obj), subresource)

        return self.guaranteed_update(resource, namespace, name, change)

    def guaranteed_update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[Object], Object],
    ) -> Object:
        """Read, apply `change` (which may raise an ApiError), compare-and-swap; again
        on a concurrent write. An object whose deletion waits for finalizers is deleted
        once the change leaves none."""
        key = resource.key(namespace, name)
        target = Target(resource.plural, name, resource.group)
        kind = kind_for(resource)
        for _ in range(_MAX_RETRIES):
            try:
                kv = self.backend.get(key)
            except storage_errors.StorageError as e:
                raise errors.from_storage(e, target) from None
            current = _decode(kv)
            updated = change(copy.deepcopy(current))
            meta = updated["metadata"]
            try:
                # Gone once nothing holds it: no finalizers, and no grace period (a pod's
                # kubelet deletes it again with grace 0 when its containers are stopped),
                # nor what the kind holds it by (a namespace's spec.finalizers).
                if (
                    meta.get("deletionTimestamp")
                    and not meta.get("finalizers")
                    and not meta.get("deletionGracePeriodSeconds")
                    and not kind.held(updated)
                ):
                    deleted = self.backend.delete(key, expected_mod_revision=kv.mod_revision)
                    updated["metadata"]["resourceVersion"] = str(deleted.revision)
                    return updated
                if _content(updated) == _content(current):
                    return current  # nothing changed: no write, no new resourceVersion
                revision = self.backend.update(key, _encode(updated), kv.mod_revision)
            except storage_errors.Conflict:
                continue
            except storage_errors.StorageError as e:
                raise errors.from_storage(e, target) from None
            meta["resourceVersion"] = str(revision)
            return updated
        raise errors.conflict(target, "too many concurrent updates, try again")

    def _merge_update(
        self, resource: ResourceType, current: Object, new: Object, subresource: str
    ) -> Object:
        kind = kind_for(resource)
        meta, old_meta = new["metadata"], current["metadata"]
        for owned in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "namespace", "name", "generation"):  # fmt: skip
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        if subresource == "status":
            # Only the status changes (the real API also keeps the labels here).
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status", {})
            return merged
        if "status" in resource.subresources and "status" in current:
            new["status"] = current["status"]
        elif "status" in resource.subresources:
            new.pop("status", None)
        kind.keep_on_update(current, new)
        target = Target(resource.plural, meta.get("name", ""), resource.group)
        with _decoding(resource):
            kind.default(new)
            causes = kind.validate(new) + kind.validate_update(current, new)
        if causes:
            raise errors.invalid(resource.kind, target, causes)
        if new.get("spec") != current.get("spec") and "generation" in old_meta:
            meta["generation"] = int(old_meta["generation"]) + 1
        return new

    def delete(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str = "",
        preconditions: Object | None = None,
    ) -> Object:
        """The object as deleted (or as marked for deletion)."""
        target = Target(resource.plural, name, resource.group)
        kind = kind_for(resource)
        preconditions = preconditions or {}
        if resource.kind == "Namespace" and not resource.group and name in IMMORTAL_NAMESPACES:
            # The NamespaceLifecycle admission's answer.
            raise errors.ApiError(
                403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be '
                "deleted", target,
            )  # fmt: skip

        def mark(current: Object) -> Object:
            meta = current["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise errors.conflict(target, "Precondition failed: UID in precondition: "
                                      f"{preconditions['uid']}, UID in object meta: "
                                      f"{meta.get('uid')}")  # fmt: skip
            wanted_rv = preconditions.get("resourceVersion")
            if wanted_rv and wanted_rv != meta["resourceVersion"]:
                raise errors.conflict(target, "Precondition failed: ResourceVersion in "
                                      f"precondition: {wanted_rv}, ResourceVersion in object "
                                      f"meta: {meta['resourceVersion']}")  # fmt: skip
            finalizers = list(meta.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            grace = kind.grace_period(current, grace_period)
            if finalizers:
                meta["finalizers"] = finalizers
            pending = meta.get("deletionGracePeriodSeconds")
            if not meta.get("deletionTimestamp") or pending is None or grace < int(pending):
                # As the real API: when the grace period will be over; a later delete may
                # only shorten it. Without a grace period, guaranteed_update deletes the
                # object unless finalizers hold it.
                meta["deletionTimestamp"] = now_rfc3339(lambda: self.clock() + grace)
                meta["deletionGracePeriodSeconds"] = grace
            kind.terminate(current)
            return current

        return self.guaranteed_update(resource, namespace, name, mark)

    # -- watch --------------------------------------------------------------------

    def watch(
        self,
        resource: ResourceType,
        namespace: str,
        *,
        resource_version: str,
        selectors: Selectors,
        stop: Callable[[], bool],
        bookmark_every: float = 0.0,
    ) -> Generator[WatchEvent, None, None]:
        """Events until `stop()` is true (checked at least every second). The watch is
        set up before this returns: a bad or compacted `resource_version` (400, 410)
        raises here, and the server can answer 200 before the first event."""
        events = self._watch(resource, namespace, resource_version, selectors, stop,
                             bookmark_every)  # fmt: skip
        next(events)  # up to the subscription; close() now ends the storage watch
        return cast(Generator[WatchEvent, None, None], events)

    def _watch(
        self,
        resource: ResourceType,
        namespace: str,
        resource_version: str,
        selectors: Selectors,
        stop: Callable[[], bool],
        bookmark_every: float,
    ) -> Generator[WatchEvent | None, None, None]:
        prefix = resource.prefix(namespace)
        existing: list[Object] = []
        if resource_version in ("", "0"):
            listed = self.list(resource, namespace, selectors=selectors)
            existing = listed["items"]
            start = int(listed["metadata"]["resourceVersion"])
        elif resource_version.isdigit():
            start = int(resource_version)
        else:
            raise errors.bad_request(f"invalid resourceVersion {resource_version!r}")
        try:
            watch = self.backend.watch(prefix, start)
        except storage_errors.Compacted:
            raise errors.gone(f"too old resource version: {start}") from None
        last_bookmark = self.clock()
        with watch:
            yield None  # set up (see watch)
            for item in existing:
                yield WatchEvent("ADDED", item)
            while not stop():
                try:
                    batch = watch.next_batch(timeout=1.0)
                except storage_errors.Compacted:
                    raise errors.gone(f"too old resource version: {start}") from None
                if batch is None:
                    return
                for event in batch:
                    converted = _watch_event(resource, event, selectors)
                    if converted is not None:
                        yield converted
                    start = event.revision
                if bookmark_every and self.clock() - last_bookmark >= bookmark_every:
                    last_bookmark = self.clock()
                    yield WatchEvent("BOOKMARK", {
                        "kind": resource.kind, "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": str(start)},
                    })  # fmt: skip

    # -- helpers ------------------------------------------------------------------

    def _check_identity(
        self, resource: ResourceType, obj: Object, namespace: str, name: str = ""
    ) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version not in (None, "", resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({resource.api_version})"
            )
        if kind not in (None, "", resource.kind):
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        meta = obj["metadata"]
        given_namespace = meta.get("namespace")
        if resource.namespaced and given_namespace and given_namespace != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if name and meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if name:
            meta["name"] = name

    def _namespace_exists(self, namespace: str) -> None:
        try:
            kv = self.backend.get(f"/registry/namespaces/{namespace}")
        except storage_errors.NotFound:
            raise errors.not_found(Target("namespaces", namespace)) from None
        if json.loads(kv.value).get("metadata", {}).get("deletionTimestamp"):
            raise errors.ApiError(
                403, "Forbidden",
                f'unable to create new content in namespace {namespace} because it is being '
                "terminated",
            )  # fmt: skip


def _watch_event(resource: ResourceType, event: Event, selectors: Selectors) -> WatchEvent | None:
    if event.type is not EventType.DELETE and selectors.everything:
        # The previous version is needed only when a selector may have matched it
        # and not the new one (most watches select everything).
        current, encoded = _shared.get(event.kv)
        kind = "MODIFIED" if event.prev_kv is not None else "ADDED"
        return WatchEvent(kind, current, encoded)
    previous = _decode(event.prev_kv) if event.prev_kv is not None else None
    if event.type is EventType.DELETE:
        if previous is None or not selectors.match(resource, previous):
            return None
        previous["metadata"]["resourceVersion"] = str(event.revision)
        return WatchEvent("DELETED", previous)
    current, encoded = _shared.get(event.kv)
    now_matches = selectors.match(resource, current)
    before = previous is not None and selectors.match(resource, previous)
    if now_matches:
        return WatchEvent("MODIFIED" if before else "ADDED", current, encoded)
    if before and previous is not None:
        # As the watch cache: the object as it last matched, at the event's version.
        previous["metadata"]["resourceVersion"] = str(event.revision)
        return WatchEvent("DELETED", previous)
    return None


def encode_continue(revision: int, after: str) -> str:
    import base64

    raw = json.dumps({"v": 1, "rv": revision, "start": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    import base64

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        return int(value["rv"]), str(value["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("invalid continue token") from None
