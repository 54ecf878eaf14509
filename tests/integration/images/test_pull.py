"""Pulling from a real docker-registry on 127.0.0.1 through skopeo: by tag, by digest,
from a manifest list, through a mirror, over plain HTTP, with and without auth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from images.build import push
from images.errors import PullError
from images.metadata import chain_ids
from images.pull import Platform, Progress, Skopeo, SkopeoFailed, Source, resolve, sha256_digest
from images.registries import RegistryConfig
from images.store import ImageStore
from tests.integration.images.conftest import AUTH_PASSWORD, AUTH_USER, Served, SkopeoShim

pytestmark = pytest.mark.root

Factory = Callable[..., ImageStore]


def _blob_json(store: ImageStore, digest: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(store.content.read_bytes(digest))
    return value


def test_pull_by_tag(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    events: list[Progress] = []
    image = store.pull(served.ref("httpd"), progress=events.append)

    name = f"{served.host}/kubeling/httpd"
    assert image.repo_tags == (f"{name}:latest",)
    assert image.repo_digests == (f"{name}@{served.built.digests['httpd']}",)
    assert image.manifest_digest == served.built.digests["httpd"]
    assert image.platform == "linux/amd64"
    assert image.config.cmd == ("busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    assert image.config.exposed_ports == ("80/tcp",)
    assert image.config.env[0].startswith("PATH=")
    assert len(image.layers) == 2
    # the image id is the config digest, and every blob is stored and verifies
    manifest = _blob_json(store, image.manifest_digest)
    assert image.id == manifest["config"]["digest"]  # type: ignore[index]
    for digest in [image.id, image.manifest_digest, *(layer.digest for layer in image.layers)]:
        assert store.content.verify(digest), digest
    # each layer is a committed snapshot named by chain id
    committed = {i.name for i in store.snapshots.walk()}
    assert set(chain_ids(image.diff_ids)) <= committed
    # progress: resolved first, done last, bytes and layers counted up to the totals
    assert events[0].phase == "resolved" and events[-1].phase == "done"
    assert events[-1].bytes_done == events[-1].bytes_total > 1_000_000
    assert events[-1].layers_done == events[-1].layers_total == 2
    assert any(e.phase == "unpacked" for e in events)
    # the store answers by name, short name forms and id prefix
    assert store.get(f"{name}:latest").id == image.id
    assert store.get(f"{name}").id == image.id
    assert store.get(image.id.removeprefix("sha256:")[:12]).id == image.id
    assert [i.id for i in store.list()] == [image.id]


def test_pull_docker_schema2_keeps_the_registry_ids(served: Served, store_factory: Factory) -> None:
    """A Docker v2 schema 2 image is stored unconverted: its id is the config digest
    the registry serves, its repo digest that of the Docker manifest."""
    ref = served.ref("busybox-docker")
    raw = Skopeo().inspect_raw(Source(ref, insecure=True))
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    store = store_factory()
    image = store.pull(ref)
    assert image.id == manifest["config"]["digest"]
    assert image.manifest_digest == sha256_digest(raw)
    assert image.repo_digests == (f"{served.host}/kubeling/busybox-docker@{sha256_digest(raw)}",)
    assert image.config.cmd == ("sh",)
    for digest in [image.id, image.manifest_digest, *(layer.digest for layer in image.layers)]:
        assert store.content.verify(digest), digest
    assert list((store.root / "tmp").iterdir()) == []
    # its layer is the same blob as the OCI busybox's: pulling that fetches no layer
    oci = store.pull(served.ref("busybox"))
    assert oci.layers[0].digest == image.layers[0].digest
    assert oci.top_layer == image.top_layer


def test_pull_by_digest(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    digest = served.built.digests["nonroot"]
    image = store.pull(f"{served.host}/kubeling/nonroot@{digest}")
    assert image.repo_tags == ()
    assert image.repo_digests == (f"{served.host}/kubeling/nonroot@{digest}",)
    assert image.config.user == "1000:1000"
    assert store.get(f"{served.host}/kubeling/nonroot@{digest}").id == image.id


def test_pull_by_wrong_digest_fails(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    wrong = served.built.digests["pause"]  # exists in the registry, not in this repo
    with pytest.raises(PullError, match=rf"pull {served.host}/kubeling/busybox@{wrong}: "):
        store.pull(f"{served.host}/kubeling/busybox@{wrong}")
    assert store.list() == []


def test_manifest_list_selects_linux_amd64(served: Served, store_factory: Factory) -> None:
    built = served.built
    image = store_factory().pull(served.ref("multiarch"))
    assert image.platform == "linux/amd64"
    assert image.manifest_digest == built.arch_digests["amd64"]
    # the repo digest is that of the index, what the tag points to
    assert image.repo_digests == (f"{served.host}/kubeling/multiarch@{built.index_digest}",)
    assert image.config.labels["kubeling.test/arch"] == "amd64"

    arm = store_factory("arm", platform=Platform("linux", "arm64", "v8"))
    image = arm.pull(served.ref("multiarch"))
    assert image.platform == "linux/arm64/v8"
    assert image.manifest_digest == built.arch_digests["arm64"]


def test_manifest_list_without_the_platform(served: Served, store_factory: Factory) -> None:
    store = store_factory(platform=Platform("linux", "s390x"))
    with pytest.raises(PullError, match=r"no linux/s390x image .*linux/amd64, linux/arm64/v8"):
        store.pull(served.ref("multiarch"))


def test_mirror_resolution(served: Served, store_factory: Factory, shim: SkopeoShim) -> None:
    """registry.example.test/... is served by the local registry through a mirror with
    prefix rewriting; nothing is fetched from registry.example.test itself."""
    config = RegistryConfig.from_dict(
        {
            "registry": [
                {
                    "prefix": "registry.example.test/mirrored",
                    "mirror": [{"location": f"{served.host}/kubeling", "insecure": True}],
                }
            ]
        }
    )
    store = store_factory(registries=config, skopeo=str(shim.path))
    image = store.pull("registry.example.test/mirrored/pause:latest")
    assert image.repo_tags == ("registry.example.test/mirrored/pause:latest",)
    digest = served.built.digests["pause"]
    assert image.repo_digests == (f"registry.example.test/mirrored/pause@{digest}",)
    assert image.config.entrypoint == ("/pause",)
    calls = shim.calls()
    assert calls and all("registry.example.test" not in args for _, args in calls)
    assert all(f"docker://{served.host}/kubeling/pause" in args for _, args in calls)


def test_mirror_falls_back_to_the_next_endpoint(served: Served, store_factory: Factory) -> None:
    """A mirror that lacks the image is skipped for the next one (all on loopback)."""
    config = RegistryConfig.from_dict(
        {
            "registry": [
                {
                    "prefix": "registry.example.test",
                    "location": f"{served.host}/kubeling",
                    "mirror": [{"location": f"{served.host}/empty-mirror", "insecure": True}],
                }
            ]
        }
    )
    image = store_factory(registries=config).pull("registry.example.test/busybox:latest")
    assert image.repo_tags == ("registry.example.test/busybox:latest",)


def test_insecure_registry(served: Served, store_factory: Factory) -> None:
    """A plain-HTTP registry works when insecure (loopback always is); treated as a
    TLS registry it fails with skopeo's reason in one line."""
    config = RegistryConfig.from_dict({"registry": [{"location": served.host, "insecure": True}]})
    image = store_factory(registries=config).pull(served.ref("busybox"))
    assert image.config.cmd == ("sh",)

    secure = Source(f"{served.host}/kubeling/busybox:latest", insecure=False)
    with pytest.raises(SkopeoFailed, match="HTTP response to HTTPS client") as info:
        resolve(
            Skopeo(),
            secure,
            repository=f"{served.host}/kubeling/busybox",
            expected_digest=None,
            want=Platform(),
        )
    assert "\n" not in str(info.value)


def test_missing_image_names_the_reference(served: Served, store_factory: Factory) -> None:
    store = store_factory()
    with pytest.raises(PullError) as info:
        store.pull(f"{served.host}/kubeling/nothing-here:1")
    message = str(info.value)
    assert message.startswith(f"pull {served.host}/kubeling/nothing-here:1: ")
    assert "manifest unknown" in message or "name unknown" in message
    assert "\n" not in message


def test_auth_failure_message(auth_served: Served, store_factory: Factory, tmp_path: Path) -> None:
    ref = auth_served.ref("busybox")
    store = store_factory()
    with pytest.raises(PullError) as info:
        store.pull(ref)
    message = str(info.value)
    assert message.startswith(f"pull {ref}: ")
    assert "unauthorized" in message and "\n" not in message

    wrong = RegistryConfig.from_dict(
        {"auth": {auth_served.host: {"username": AUTH_USER, "password": "not-the-password-42"}}}
    )
    store = store_factory("wrong", registries=wrong)
    with pytest.raises(PullError) as info:
        store.pull(ref)
    message = str(info.value)
    assert "unauthorized" in message
    assert "not-the-password-42" not in message and AUTH_PASSWORD not in message

    right = RegistryConfig.from_dict(
        {"auth": {auth_served.host: {"username": AUTH_USER, "password": AUTH_PASSWORD}}}
    )
    store = store_factory("right", registries=right)
    image = store.pull(ref)
    assert image.repo_tags == (ref,)
    # the auth file lived only for the pull
    assert not any((store.root / "tmp").rglob("*.json"))


def test_pull_with_explicit_credentials(auth_served: Served, store_factory: Factory) -> None:
    from images.registries import Credentials

    store = store_factory()
    creds = Credentials(username=AUTH_USER, password=AUTH_PASSWORD)
    image = store.pull(auth_served.ref("busybox"), credentials=creds)
    assert image.config.cmd == ("sh",)


def test_repeat_pull_fetches_no_blob(
    served: Served, store_factory: Factory, shim: SkopeoShim
) -> None:
    store = store_factory(skopeo=str(shim.path))
    first = store.pull(served.ref("multilayer"))
    before = {i.name for i in store.snapshots.walk()}
    again = store.pull(served.ref("multilayer"))
    assert again.id == first.id
    assert len(shim.calls("copy")) == 1  # everything was present the second time
    assert {i.name for i in store.snapshots.walk()} == before


def test_store_survives_restart(served: Served, tmp_path: Path) -> None:
    with ImageStore(tmp_path / "s") as store:
        image = store.pull(served.ref("busybox"))
    with ImageStore(tmp_path / "s") as store:
        assert store.get(served.ref("busybox")).id == image.id
        assert store.content.verify(image.layers[0].digest)


def test_pulling_a_present_tag_asks_the_registry_but_runs_no_skopeo(
    served: Served, store_factory: Factory, shim: SkopeoShim
) -> None:
    """As containerd: the tag is resolved again (it may have moved), the image is not
    fetched again; the resolution is one manifest HEAD, no skopeo process."""
    store = store_factory(skopeo=str(shim.path))
    ref = f"{served.host}/kubeling/busybox:latest"
    first = store.pull(ref)
    before = len(shim.calls())
    assert store.pull(ref).id == first.id
    assert len(shim.calls()) == before
    by_digest = f"{served.host}/kubeling/busybox@{served.built.digests['busybox']}"
    assert store.pull(by_digest).id == first.id
    assert len(shim.calls()) == before

    # The tag moves to another image: the HEAD sees a new digest, the pull fetches it.
    push(served.built.layout, "httpd", f"{served.host}/kubeling/moving:latest")
    moving = f"{served.host}/kubeling/moving:latest"
    assert store.pull(moving).id != first.id
    push(served.built.layout, "busybox", f"{served.host}/kubeling/moving:latest")
    assert store.pull(moving).id == first.id
    assert len(shim.calls()) > before
