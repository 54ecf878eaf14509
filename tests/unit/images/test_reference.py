from __future__ import annotations

import dataclasses

import pytest

from images.errors import ImageError, InvalidReference
from images.reference import Reference, parse, parse_digest, split_location

DIGEST = "sha256:" + "a1" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "normal"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None,
         "docker.io/library/busybox:latest"),
        ("library/busybox", "docker.io", "library/busybox", "latest", None,
         "docker.io/library/busybox:latest"),
        ("docker.io/busybox:1.36", "docker.io", "library/busybox", "1.36", None,
         "docker.io/library/busybox:1.36"),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None,
         "docker.io/library/busybox:latest"),
        ("user/repo", "docker.io", "user/repo", "latest", None, "docker.io/user/repo:latest"),
        ("quay.io/x/y:1", "quay.io", "x/y", "1", None, "quay.io/x/y:1"),
        ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
        ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None, "127.0.0.1:5000/a/b:t"),
        ("[::1]:5000/a", "[::1]:5000", "a", "latest", None, "[::1]:5000/a:latest"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None,
         "registry.k8s.io/pause:3.9"),
        ("a.b/c__d/e-f--g.h_i:V_1.0-x", "a.b", "c__d/e-f--g.h_i", "V_1.0-x", None,
         "a.b/c__d/e-f--g.h_i:V_1.0-x"),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST,
         f"docker.io/library/busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST,
         f"docker.io/library/busybox:1@{DIGEST}"),
        (f"127.0.0.1:5000/a@{DIGEST}", "127.0.0.1:5000", "a", None, DIGEST,
         f"127.0.0.1:5000/a@{DIGEST}"),
    ],
)  # fmt: skip
def test_normalisation(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, normal: str
) -> None:
    ref = parse(text)
    assert ref == Reference(domain, path, tag, digest)
    assert str(ref) == normal
    assert ref.name == f"{domain}/{path}"
    assert parse(str(ref)) == ref  # the normal form is a fixed point


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("user/repo:2", "user/repo:2"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("quay.io/x/y:1", "quay.io/x/y:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert parse(text).familiar == familiar


def test_name() -> None:
    assert parse("busybox:1").name == "docker.io/library/busybox"
    assert parse(f"127.0.0.1:5000/a/b:t@{DIGEST}").name == "127.0.0.1:5000/a/b"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Busybox", "repository name must be lowercase"),
        ("User/repo", "repository name must be lowercase"),
        ("quay.io/Org/y", "repository name must be lowercase"),
        ("http://quay.io/x/y", "no scheme"),
        ("https://busybox", "no scheme"),
        ("busy box", "whitespace"),
        (" busybox", "whitespace"),
        ("busybox\n", "whitespace"),
        ("busybox:", "invalid tag ''"),
        ("busybox:-x", "invalid tag '-x'"),
        ("busybox:a+b", "invalid tag 'a+b'"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@", "invalid digest ''"),
        ("busybox@sha256:abc", "64 hex characters, got 3"),
        ("busybox@sha256:" + "a" * 65, "got 65"),
        ("busybox@sha256:" + "A" * 64, "lowercase hex"),
        ("busybox@sha256:" + "g" * 64, "lowercase hex"),
        ("busybox@md5:" + "a" * 32, "unsupported algorithm 'md5'"),
        ("busybox@sha512:" + "a" * 128, "unsupported algorithm 'sha512'"),
        ("busybox@" + "a" * 64, "want sha256:<64 hex characters>"),
        (f"busybox@{DIGEST}@{DIGEST}", "invalid digest"),
        ("a" * 64, "image id"),
        ("quay.io//x", "empty path component"),
        ("quay.io/x/", "empty path component"),
        ("/x", "empty path component"),
        (":tag", "empty path component"),
        ("quay.io/-x", "invalid path component '-x'"),
        ("quay.io/x..y", "invalid path component 'x..y'"),
        ("quay.io/x___y", "invalid path component 'x___y'"),
        ("-bad.io/x", "invalid registry host '-bad.io'"),
        ("quay.io:port/x", "invalid registry host"),
        ("quay.io/" + "x" * 250, "longer than 255"),
    ],
)
def test_rejections(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"invalid reference {text!r}: ")
    assert reason in message
    assert isinstance(caught.value, ImageError)


def test_tag_of_128_characters_is_accepted() -> None:
    assert parse("busybox:" + "t" * 128).tag == "t" * 128


def test_localhost_without_path_is_a_name_and_tag_as_in_docker() -> None:
    assert str(parse("localhost:5000")) == "docker.io/library/localhost:5000"


def test_constructor_validates() -> None:
    assert str(Reference("quay.io", "x", None, None)) == "quay.io/x"
    with pytest.raises(InvalidReference, match="repository name must be lowercase"):
        Reference("quay.io", "X", "1", None)
    with pytest.raises(InvalidReference, match="invalid digest"):
        dataclasses.replace(parse("busybox"), digest="sha256:00")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse("busybox").tag = "2"  # type: ignore[misc]


def test_parse_digest() -> None:
    assert parse_digest(DIGEST) == DIGEST
    with pytest.raises(InvalidReference, match=r"invalid digest 'sha256:00': .* got 2"):
        parse_digest("sha256:00")


@pytest.mark.parametrize(
    ("text", "host", "path"),
    [
        ("registry.k8s.io", "registry.k8s.io", ""),
        ("127.0.0.1:5000/k8s", "127.0.0.1:5000", "k8s"),
        ("localhost/a/b", "localhost", "a/b"),
        ("docker.io/library/busybox", "docker.io", "library/busybox"),
    ],
)
def test_split_location(text: str, host: str, path: str) -> None:
    assert split_location(text) == (host, path)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("busybox", "must start with a registry host"),
        ("user/repo", "must start with a registry host"),
        ("quay.io/", "empty path component"),
        ("quay.io/x:1", "invalid path component 'x:1'"),
        ("quay.io/X", "must be lowercase"),
        ("http://quay.io", "invalid registry host"),
    ],
)
def test_split_location_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=f"invalid registry location {text!r}: .*{reason}"):
        split_location(text)
