"""images/pull.py pure parts: platform choice, skopeo error lines, media types."""

from __future__ import annotations

import pytest

from images.errors import PullError
from images.pull import (
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Platform,
    media_type_of,
    select_manifest,
    skopeo_error,
)


def _entry(
    digest: str, arch: str, variant: str | None = None, os: str = "linux"
) -> dict[str, object]:
    plat: dict[str, str] = {"os": os, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {"mediaType": MEDIA_OCI_MANIFEST, "digest": digest, "size": 1, "platform": plat}


def test_select_amd64_from_index() -> None:
    index = {
        "manifests": [
            _entry("a", "arm64", "v8"),
            _entry("b", "amd64"),
            _entry("c", "amd64", os="windows"),
        ]
    }
    assert select_manifest(index, Platform())["digest"] == "b"


def test_select_prefers_exact_variant() -> None:
    index = {"manifests": [_entry("a", "arm64"), _entry("b", "arm64", "v8")]}
    assert select_manifest(index, Platform("linux", "arm64", "v8"))["digest"] == "b"
    assert select_manifest(index, Platform("linux", "arm64", "v7"))["digest"] == "a"


def test_select_names_what_is_offered() -> None:
    index = {"manifests": [_entry("a", "arm64", "v8"), _entry("b", "s390x")]}
    with pytest.raises(PullError, match=r"no linux/amd64 image .*linux/arm64/v8, linux/s390x"):
        select_manifest(index, Platform())


def test_media_type_guess() -> None:
    assert media_type_of({"manifests": []}) == MEDIA_OCI_INDEX
    assert media_type_of({"layers": []}) == MEDIA_OCI_MANIFEST
    assert media_type_of({"mediaType": MEDIA_DOCKER_LIST}) == MEDIA_DOCKER_LIST


def test_skopeo_error_keeps_the_cause_and_masks_secrets() -> None:
    stderr = (
        'time="2026-01-01T00:00:00Z" level=fatal msg="Error parsing image name '
        '\\"docker://127.0.0.1:5999/x/busybox:1\\": reading manifest 1 in '
        '127.0.0.1:5999/x/busybox: unauthorized: authentication required hunter2"\n'
    )
    text = skopeo_error(stderr, 1, secrets=["hunter2"])
    assert text == "unauthorized: authentication required <redacted>"
    assert skopeo_error("", 3) == "skopeo exited with status 3"
    assert skopeo_error("plain failure\n", 1) == "plain failure"
