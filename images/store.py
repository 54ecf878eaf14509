"""The image store service: pull, import, list, get, tag, remove, prune, rootfs.

Layout under ``root``::

    content/blobs/sha256/<hex>   blobs (images/content.py); skopeo's shared blob dir
    snapshots/                   layer and container snapshots (images/snapshots/)
    metadata.db                  image records (images/metadata.py)
    tmp/                         per-pull OCI layouts and unpack dirs (same file system
                                 as content/ and snapshots/, so renames are atomic)

Helpers: images/pull.py (skopeo, platform choice, progress), images/layers.py
(unpacking while blobs arrive), images/archives.py (what an import source holds).
    locks/<sha256 of ref>.lock   one pull per reference at a time
    store.lock                   shared by pulls/imports, exclusive for prune/recovery

A pull (see :meth:`ImageStore.pull`) is a flat list of steps: resolve at the first
endpoint that answers (mirrors first), copy the missing blobs with skopeo while
unpacking each layer as soon as its blob lands, commit the layer snapshots in order
(named by chain id, skipped when present), then record the image in one transaction.
Until that transaction nothing refers to the new blobs and snapshots: a crash leaves
at most unreferenced data, removed by :meth:`prune` (and debris in ``tmp/``, removed
at the next start when no other process uses the store).

Concurrency: pulls of one reference are done once: a thread lock plus a file lock per
reference; a caller that waited for another's pull of the same reference returns its
result. Layers shared by different images are unpacked once (a racing second commit
finds the snapshot present and discards its copy). Prune takes ``store.lock``
exclusively, so it never deletes blobs a running pull has fetched but not recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.archives import import_sources
from images.content import ContentStore
from images.errors import (
    DigestMismatch,
    ImageError,
    InUse,
    InvalidReference,
    NotFound,
    PullError,
)
from images.layers import EXTRACT_PREFIX, LayerUnpacker
from images.metadata import (
    Image,
    LayerRecord,
    MetadataDB,
    NameKind,
    NewImage,
    chain_ids,
)
from images.pull import (
    INDEX_TYPES,
    MEDIA_DOCKER_MANIFEST,
    BlobWatcher,
    Platform,
    Progress,
    ProgressCallback,
    Resolved,
    Skopeo,
    SkopeoFailed,
    Source,
    head_digest,
    media_type_of,
    resolve,
    select_manifest,
    sha256_digest,
)
from images.reference import Reference, parse
from images.registries import Credentials, Endpoint, RegistryConfig, auth_file
from images.snapshots.base import Kind, Mount, Snapshotter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PruneResult:
    blobs: int
    bytes: int
    snapshots: int


class ImageStore:
    def __init__(
        self,
        root: Path,
        registries: RegistryConfig | None = None,
        *,
        skopeo: str = "skopeo",
        snapshotter: str = "auto",
        platform: Platform | None = None,
        allow_devices: bool = False,
        unpack_workers: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.registries = registries or RegistryConfig()
        self.platform = platform or Platform.host()
        self.allow_devices = allow_devices
        for sub in ("tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "tmp", 0o700)
        self.content = ContentStore(self.root / "content")
        self.snapshotter_name, self.snapshots = _open_snapshotter(
            self.root / "snapshots", snapshotter
        )
        self.db = MetadataDB(self.root / "metadata.db")
        self.skopeo = Skopeo(skopeo)
        self._workers = unpack_workers or max(2, min(8, os.cpu_count() or 2))
        self._ref_locks: dict[str, threading.Lock] = {}
        self._ref_locks_guard = threading.Lock()
        self._recover()

    def close(self) -> None:
        self.db.close()
        closer = getattr(self.snapshots, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def blobs_dir(self) -> Path:
        return self.content.blobs_dir / "sha256"

    # ---- locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _store_lock(self, exclusive: bool, *, blocking: bool = True) -> Iterator[bool]:
        with open(self.root / "store.lock", "a+b") as f:
            flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (
                0 if blocking else fcntl.LOCK_NB
            )
            try:
                fcntl.flock(f, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _ref_lock(self, key: str) -> Iterator[bool]:
        """Hold the lock of one reference; yields whether we had to wait for it."""
        with self._ref_locks_guard:
            lock = self._ref_locks.setdefault(key, threading.Lock())
        waited = not lock.acquire(blocking=False)
        if waited:
            lock.acquire()
        try:
            name = hashlib.sha256(key.encode()).hexdigest()
            with open(self.root / "locks" / f"{name}.lock", "a+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    waited = True
                    fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield waited
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            lock.release()

    def _recover(self) -> None:
        """Remove debris of crashed pulls when no other process is using the store."""
        with self._store_lock(True, blocking=False) as alone:
            if alone:
                self._clean_debris()

    def _clean_debris(self) -> None:
        for entry in (self.root / "tmp").iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
        for info in self.snapshots.walk():
            if info.name.startswith(EXTRACT_PREFIX):
                with contextlib.suppress(ImageError):
                    self.snapshots.remove(info.name)

    # ---- pull ----------------------------------------------------------------------------

    def pull(
        self,
        ref_text: str,
        *,
        credentials: Credentials | None = None,
        progress: ProgressCallback | None = None,
    ) -> Image:
        """Pull ``ref_text`` (tag or digest) for this store's platform and return it."""
        ref = parse(ref_text)
        started = time.time()
        with self._ref_lock(str(ref)) as waited:
            if waited:
                done = self._pulled_since(ref, started)
                if done is not None:
                    log.debug("pull shared with a concurrent one", extra={"ref": str(ref)})
                    return done
            with self._store_lock(False):
                return self._pull(ref, credentials, progress)

    def _pulled_since(self, ref: Reference, since: float) -> Image | None:
        updated = self.db.name_updated(_primary_name(ref))
        if updated is None or updated < since:
            return None
        image_id = self.db.resolve_name(_primary_name(ref))
        return self.db.get(image_id) if image_id else None

    def _pull(
        self, ref: Reference, credentials: Credentials | None, progress: ProgressCallback | None
    ) -> Image:
        endpoints = self.registries.endpoints(ref)
        present = self._present(ref, endpoints, credentials)
        if present is not None:
            return present
        failures: list[str] = []
        for endpoint in endpoints:
            creds = credentials or self.registries.credentials(endpoint.host)
            secrets = tuple(s for s in (creds.password, creds.identity_token) if s) if creds else ()
            with self._auth(endpoint.host, creds) as authfile:
                source = Source(endpoint.reference_string, endpoint.insecure, authfile, secrets)
                try:
                    resolved = resolve(
                        self.skopeo,
                        source,
                        repository=parse(endpoint.reference_string).name,
                        expected_digest=ref.digest,
                        want=self.platform,
                    )
                except (SkopeoFailed, DigestMismatch) as e:
                    log.debug("resolve failed", extra={"endpoint": endpoint.reference_string})
                    failures.append(_endpoint_failure(endpoint.reference_string, ref, e))
                    continue
                except PullError as e:
                    raise PullError(f"pull {ref}: {e}") from None
                try:
                    return self._fetch_and_record(ref, resolved, progress)
                except SkopeoFailed as e:
                    failures.append(_endpoint_failure(endpoint.reference_string, ref, e))
                    continue
                except ImageError as e:  # a bad layer or config: same type, with context
                    if str(e).startswith(f"pull {ref}:"):
                        raise
                    raise type(e)(f"pull {ref}: {e}") from e
        raise PullError(f"pull {ref}: {'; '.join(failures) or 'no endpoint'}")

    def _present(
        self, ref: Reference, endpoints: list[Endpoint], credentials: Credentials | None
    ) -> Image | None:
        """The image, when the store has what ``ref`` names now: a digest reference it
        has, or a tag whose digest (one manifest HEAD, no skopeo) is the one the tag
        already points to here. None means: pull as usual."""
        if ref.digest is not None:
            image_id = self.db.resolve_name(f"{ref.name}@{ref.digest}")
            return self.db.get(image_id) if image_id else None
        tagged = self.db.resolve_name(_primary_name(ref))
        if tagged is None or not endpoints:
            return None
        endpoint = endpoints[0]
        if credentials or self.registries.credentials(endpoint.host):
            return None  # with credentials, skopeo does the talking
        digest = head_digest(endpoint.reference_string, insecure=endpoint.insecure)
        if digest is None or self.db.resolve_name(f"{ref.name}@{digest}") != tagged:
            return None
        log.debug("pull: present", extra={"ref": str(ref), "digest": digest})
        return self.db.get(tagged)

    @contextlib.contextmanager
    def _auth(self, host: str, creds: Credentials | None) -> Iterator[Path | None]:
        if creds is None:
            yield None
            return
        with auth_file(self.root / "tmp" / "auth", host, creds) as path:
            yield path

    def _fetch_and_record(
        self, ref: Reference, resolved: Resolved, progress: ProgressCallback | None
    ) -> Image:
        layers = resolved.layer_descriptors()
        config_desc = resolved.manifest["config"]
        total = sum(int(d.get("size", 0)) for d in layers) + int(config_desc.get("size", 0))
        report = _Reporter(str(ref), progress, total, len(layers))
        report("resolved", 0, 0)
        with self._workspace("pull") as work, contextlib.ExitStack() as stack:
            unpacker = stack.enter_context(self._unpacker(work, layers))
            needed = [d for d in [config_desc, *layers] if not self.content.exists(d["digest"])]
            if needed:
                # only blobs that arrive now are unpacked eagerly: one present before
                # probably has its snapshot already (finish() unpacks it if not)
                expected = {d["digest"]: int(d.get("size", 0)) for d in needed}
                self._copy_blobs(resolved, work, expected, unpacker, report, len(layers))
            report("fetched", total, len(layers))
            self._put_blob(resolved.top_raw, resolved.top_digest)
            self._put_blob(resolved.manifest_raw, resolved.manifest_digest)
            config_raw = self.content.read_bytes(config_desc["digest"])
            records = self._layer_records(resolved.manifest, config_raw)
            unpacker.finish(records, lambda n: report("unpacked", total, n))
        names: list[tuple[str, NameKind]] = []
        if ref.tag is not None:
            names.append((f"{ref.name}:{ref.tag}", "tag"))
        names.append((f"{ref.name}@{resolved.top_digest}", "digest"))
        blobs = {resolved.top_digest, resolved.manifest_digest, config_desc["digest"]}
        blobs.update(d["digest"] for d in layers)
        image_id = str(config_desc["digest"])
        self.db.put(
            NewImage(
                id=image_id,
                manifest_digest=resolved.manifest_digest,
                platform=_platform_of(config_raw),
                size=total + len(resolved.manifest_raw),
                config_json=config_raw,
                layers=tuple(records),
                blobs=frozenset(blobs),
                names=tuple(names),
            )
        )
        report("done", total, len(layers))
        return self.db.get(image_id)

    def _copy_blobs(
        self,
        resolved: Resolved,
        work: Path,
        expected: dict[str, int],
        unpacker: LayerUnpacker,
        report: _Reporter,
        layer_count: int,
    ) -> None:
        """Run skopeo copy for the platform manifest, unpacking layers as they land.

        OCI manifests go to an ``oci:`` layout with the content store's blobs dir as
        the shared blob dir: skopeo skips blobs already there and renames new ones in
        itself. Docker schema 2 manifests would be converted to OCI on the way into an
        ``oci:`` layout (a new config, so a different image id than the registry's);
        they go to a ``dir:`` directory instead, unconverted, and each blob is moved
        into the content store as it lands (same file system: a rename)."""
        source = f"docker://{resolved.repository}@{resolved.manifest_digest}"
        docker = media_type_of(resolved.manifest) == MEDIA_DOCKER_MANIFEST
        if docker:
            landing = work / "dir"
            destination = f"dir:{landing}"

            def on_blob(digest: str) -> None:
                self._adopt(landing, digest)
                unpacker.blob_ready(digest)

        else:
            landing = self.blobs_dir
            destination = f"oci:{work / 'layout'}:pull"

            def on_blob(digest: str) -> None:
                with contextlib.suppress(OSError):
                    os.chmod(self.content.path(digest), 0o444)  # immutable, as ours are
                unpacker.blob_ready(digest)

        watcher = BlobWatcher(
            blobs_dir=landing,
            staging_dir=landing if docker else work / "layout",
            expected=expected,
            on_blob=on_blob,
            on_progress=lambda done, n: report("fetching", done, min(n, layer_count)),
        ).start()
        try:
            self.skopeo.copy(
                source,
                destination,
                insecure=resolved.source.insecure,
                authfile=resolved.source.authfile,
                shared_blob_dir=None if docker else self.content.blobs_dir,
                secrets=resolved.source.secrets,
                on_spawn=self._on_skopeo,
            )
        finally:
            watcher.stop()  # a last poll: every blob that landed is seen

    def _adopt(self, directory: Path, digest: str) -> None:
        """Move a blob skopeo verified and wrote to ``directory/<hex>`` into the store."""
        src = directory / digest.removeprefix("sha256:")
        target = self.content.path(digest)
        try:
            if target.exists():
                src.unlink()
            else:
                os.chmod(src, 0o444)
                os.rename(src, target)
        except FileNotFoundError:
            pass

    def _unpacker(self, work: Path, layers: list[dict[str, Any]]) -> LayerUnpacker:
        return LayerUnpacker(
            content=self.content,
            snapshots=self.snapshots,
            work=work,
            layers=layers,
            allow_devices=self.allow_devices,
            workers=self._workers,
        )

    def _on_skopeo(self, process: Any) -> None:
        log.debug("skopeo copy started", extra={"pid": process.pid})

    def _put_blob(self, data: bytes, digest: str) -> None:
        if not self.content.exists(digest):
            self.content.add(data, digest)

    def _layer_records(self, manifest: dict[str, Any], config_raw: bytes) -> list[LayerRecord]:
        config = json.loads(config_raw)
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        layers = manifest.get("layers", [])
        if len(diff_ids) != len(layers):
            raise PullError(f"image config has {len(diff_ids)} diff ids for {len(layers)} layers")
        chains = chain_ids(diff_ids)
        return [
            LayerRecord(
                digest=str(d["digest"]),
                media_type=str(d.get("mediaType", "")),
                size=int(d.get("size", 0)),
                diff_id=diff,
                chain_id=chain,
            )
            for d, diff, chain in zip(layers, diff_ids, chains, strict=True)
        ]

    @contextlib.contextmanager
    def _workspace(self, kind: str) -> Iterator[Path]:
        work = self.root / "tmp" / f"{kind}-{uuid.uuid4().hex[:12]}"
        work.mkdir()
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # ---- import --------------------------------------------------------------------------

    def import_archive(self, source: str | Path) -> list[Image]:
        """Import every image of an ``oci-archive:``/``docker-archive:`` file, an OCI
        layout dir, a plain archive file (type detected) or a directory of archives."""
        with self._store_lock(False):
            return [self._import_one(src, name) for src, name in import_sources(source)]

    def _import_one(self, source: str, name: str | None) -> Image:
        with self._workspace("import") as work:
            try:
                if source.startswith("docker-archive:"):
                    manifest_digest, manifest_raw = self._copy_unconverted(source, work / "dir")
                else:
                    manifest_digest, manifest_raw = self._copy_to_layout(source, work / "layout")
            except SkopeoFailed as e:
                raise PullError(f"import {source}: {e}") from None
            manifest = json.loads(manifest_raw)
            if media_type_of(manifest) in INDEX_TYPES:
                entry = select_manifest(manifest, self.platform)
                manifest_digest = str(entry["digest"])
                manifest_raw = self.content.read_bytes(manifest_digest)
                manifest = json.loads(manifest_raw)
            config_digest = str(manifest["config"]["digest"])
            config_raw = self.content.read_bytes(config_digest)
            layers = list(manifest.get("layers", []))
            records = self._layer_records(manifest, config_raw)
            with self._unpacker(work, layers) as unpacker:
                unpacker.finish(records, lambda n: None)
        names: list[tuple[str, NameKind]] = []
        if name:
            names.append((name, "tag"))
        size = sum(r.size for r in records) + len(config_raw) + len(manifest_raw)
        blobs = {manifest_digest, config_digest, *(r.digest for r in records)}
        self.db.put(
            NewImage(
                id=config_digest,
                manifest_digest=manifest_digest,
                platform=_platform_of(config_raw),
                size=size,
                config_json=config_raw,
                layers=tuple(records),
                blobs=frozenset(blobs),
                names=tuple(names),
            )
        )
        return self.db.get(config_digest)

    def _copy_to_layout(self, source: str, layout: Path) -> tuple[str, bytes]:
        """skopeo copy into an OCI layout sharing the store's blobs; the manifest."""
        self.skopeo.copy(
            source,
            f"oci:{layout}:import",
            shared_blob_dir=self.content.blobs_dir,
            platform=self.platform,
        )
        index = json.loads((layout / "index.json").read_bytes())
        digest = str(index["manifests"][0]["digest"])
        return digest, self.content.read_bytes(digest)

    def _copy_unconverted(self, source: str, landing: Path) -> tuple[str, bytes]:
        """skopeo copy into a ``dir:`` (no conversion: a docker archive keeps its
        config, so its image id), then move the blobs into the store."""
        self.skopeo.copy(source, f"dir:{landing}")
        raw = (landing / "manifest.json").read_bytes()
        manifest = json.loads(raw)
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            self._adopt(landing, str(desc["digest"]))
        digest = sha256_digest(raw)
        self._put_blob(raw, digest)
        return digest, raw

    # ---- queries and names ---------------------------------------------------------------

    def get(self, ref_or_id: str) -> Image:
        return self.db.get(self._resolve(ref_or_id))

    def _resolve(self, text: str) -> str:
        hex_part = text.removeprefix("sha256:")
        if len(hex_part) == 64 and text.startswith("sha256:"):
            return self.db.get(text).id
        try:
            ref = parse(text)
        except InvalidReference:
            ref = None
        if ref is not None:
            for candidate in _names_for(ref):
                image_id = self.db.resolve_name(candidate)
                if image_id is not None:
                    return image_id
        if len(hex_part) >= 4 and all(c in "0123456789abcdef" for c in hex_part):
            ids = self.db.ids_with_prefix(hex_part)
            if len(ids) == 1:
                return ids[0]
            if len(ids) > 1:
                raise NotFound(f"image {text}: ambiguous id prefix ({len(ids)} images)")
        raise NotFound(f"image {text}: not found")

    def tag(self, source: str, new_ref: str) -> Image:
        image_id = self._resolve(source)
        ref = parse(new_ref)
        if ref.digest is not None:
            raise InvalidReference(f"tag {new_ref}: a tag cannot carry a digest")
        self.db.set_name(f"{ref.name}:{ref.tag}", "tag", image_id)
        return self.db.get(image_id)

    def remove(self, ref_or_id: str) -> list[str]:
        """Remove a name, or the whole image when it is given by id or the name is its
        last tag. Refuses (InUse) to remove an image something uses. Blobs and
        snapshots stay until :meth:`prune`. Returns what was done, one line each."""
        image_id = self._resolve(ref_or_id)
        image = self.db.get(image_id)
        try:
            ref = parse(ref_or_id)
        except InvalidReference:
            ref = None
        if ref is not None and not ref_or_id.removeprefix("sha256:").startswith(
            image.id.removeprefix("sha256:")[: len(ref_or_id)]
        ):
            name = next((n for n in _names_for(ref) if self.db.resolve_name(n) == image_id), None)
            if name is not None and len([t for t in image.repo_tags if t != name]) > 0:
                self.db.remove_name(name)
                return [f"untagged {name}"]
        users = self.db.users(image_id)
        if users:
            raise InUse(f"remove image {image_id}: in use by {', '.join(users)}")
        self.db.delete(image_id)
        out = [f"untagged {n}" for n in (*image.repo_tags, *image.repo_digests)]
        return [*out, f"deleted {image_id}"]

    def add_user(self, image_id: str, user: str) -> None:
        self.db.add_user(self._resolve(image_id), user)

    def remove_user(self, image_id: str, user: str) -> None:
        self.db.remove_user(self._resolve(image_id), user)

    # ---- rootfs --------------------------------------------------------------------------

    def rootfs(self, image: Image, key: str, *, readonly: bool = False) -> list[Mount]:
        """Prepare the snapshot ``key`` on the image's top layer (a view when
        ``readonly``) and return its mounts for runtime/ to perform."""
        parent = image.top_layer
        if readonly:
            return list(self.snapshots.view(key, parent))
        return list(self.snapshots.prepare(key, parent))

    def remove_rootfs(self, key: str) -> None:
        self.snapshots.remove(key)

    # ---- prune ---------------------------------------------------------------------------

    def prune(self) -> PruneResult:
        """Delete blobs and committed layer snapshots that no image references (and any
        debris of crashed pulls). Snapshots others build on are kept."""
        with self._store_lock(True):
            self._clean_debris()
            keep_blobs = self.db.referenced_blobs()
            blobs = freed = 0
            for digest in list(self.content.digests()):
                if digest in keep_blobs:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    freed += self.content.path(digest).stat().st_size
                self.content.delete(digest)
                blobs += 1
            keep_chains = self.db.referenced_chain_ids()
            removed = 0
            while True:
                infos = self.snapshots.walk()
                parents = {i.parent for i in infos if i.parent}
                victims = [
                    i.name
                    for i in infos
                    if i.kind is Kind.COMMITTED
                    and i.name not in keep_chains
                    and i.name not in parents
                ]
                if not victims:
                    break
                for name in victims:
                    self.snapshots.remove(name)
                    removed += 1
            return PruneResult(blobs=blobs, bytes=freed, snapshots=removed)

    # last: a method named list would shadow the builtin in the annotations above
    def list(self) -> list[Image]:
        return self.db.all_images()


def _overlay_available() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def _open_snapshotter(root: Path, name: str) -> tuple[str, Snapshotter]:
    from images.snapshots import open_snapshotter

    if name == "auto":
        name = "overlay" if os.geteuid() == 0 and _overlay_available() else "native"
    return name, open_snapshotter(name, root / name)


# ---- helpers --------------------------------------------------------------------------------


class _Reporter:
    def __init__(
        self, reference: str, callback: ProgressCallback | None, total: int, layers: int
    ) -> None:
        self.reference = reference
        self.callback = callback
        self.total = total
        self.layers = layers

    def __call__(self, phase: str, done: int, layers_done: int) -> None:
        if self.callback is not None:
            self.callback(
                Progress(self.reference, phase, min(done, self.total), self.total,
                         layers_done, self.layers)
            )  # fmt: skip


def _primary_name(ref: Reference) -> str:
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


def _names_for(ref: Reference) -> list[str]:
    out = []
    if ref.digest:
        out.append(f"{ref.name}@{ref.digest}")
    if ref.tag:
        out.append(f"{ref.name}:{ref.tag}")
    return out


def _endpoint_failure(endpoint: str, ref: Reference, error: Exception) -> str:
    where = "" if endpoint == _without_transport(ref) else f"{endpoint}: "
    return f"{where}{error}"


def _without_transport(ref: Reference) -> str:
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


def _platform_of(config_raw: bytes) -> str:
    config = json.loads(config_raw)
    parts = [config.get("os", "linux"), config.get("architecture", "amd64")]
    if config.get("variant"):
        parts.append(config["variant"])
    return "/".join(parts)
