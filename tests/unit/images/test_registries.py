from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import pytest

from images.errors import InvalidConfig
from images.reference import parse
from images.registries import (
    Credentials,
    Endpoint,
    Mirror,
    Registry,
    RegistryConfig,
    auth_file,
    is_loopback,
    write_auth_file,
)

DIGEST = "sha256:" + "b2" * 32
SECRET = "s3cr3t-Pa55"

DESIGN_EXAMPLE = """
[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000"
insecure = true

[[registry.mirror]]
location = "127.0.0.1:5000/k8s"
insecure = true

[auth."127.0.0.1:5000"]
username = "u"
password = "p"
"""

MIRRORED = """
[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"

[[registry.mirror]]
location = "mirror-0.example/mirror-for-foo"

[[registry.mirror]]
location = "mirror-1.example:5000/mirrors/foo"
insecure = true

[[registry]]
prefix = "example.com"
location = "all.example"
insecure = true

[[registry]]
location = "plain.example:5000"
insecure = true

[[registry]]
prefix = "docker.io/library/busybox"
location = "hub-cache.example/busybox"

[[registry]]
prefix = "quay.io/org/app"
location = "cache.example/app"
mirror-by-digest-only = true

[[registry.mirror]]
location = "mirror.example/app"
"""


def config_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "registries.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def endpoints(config: RegistryConfig, text: str) -> list[tuple[str, bool, str]]:
    return [(e.reference_string, e.insecure, e.host) for e in config.endpoints(parse(text))]


def test_missing_or_no_file_is_empty_config(tmp_path: Path) -> None:
    assert RegistryConfig.load(None) == RegistryConfig()
    assert RegistryConfig.load(tmp_path / "absent.toml") == RegistryConfig()
    assert RegistryConfig.load(config_file(tmp_path, "")) == RegistryConfig()


def test_design_example(tmp_path: Path) -> None:
    config = RegistryConfig.load(config_file(tmp_path, DESIGN_EXAMPLE))
    assert config.registries == (
        Registry(
            prefix="registry.k8s.io",
            location="127.0.0.1:5000",
            insecure=True,
            mirrors=(Mirror("127.0.0.1:5000/k8s", insecure=True),),
        ),
    )
    assert config.endpoints(parse("registry.k8s.io/pause:3.9")) == [
        Endpoint("127.0.0.1:5000/k8s/pause:3.9", insecure=True, host="127.0.0.1:5000"),
        Endpoint("127.0.0.1:5000/pause:3.9", insecure=True, host="127.0.0.1:5000"),
    ]
    assert config.credentials("127.0.0.1:5000") == Credentials("u", "p")
    assert config.credentials("registry.k8s.io") is None


def test_without_config_the_reference_itself() -> None:
    config = RegistryConfig()
    assert endpoints(config, "busybox") == [
        ("docker.io/library/busybox:latest", False, "docker.io")
    ]
    assert endpoints(config, "quay.io/x/y:1") == [("quay.io/x/y:1", False, "quay.io")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com/foo/image:latest", [
            ("mirror-0.example/mirror-for-foo/image:latest", False, "mirror-0.example"),
            ("mirror-1.example:5000/mirrors/foo/image:latest", True, "mirror-1.example:5000"),
            ("internal.example.net/bar/image:latest", False, "internal.example.net"),
        ]),
        # the prefix keeps the rest of the path, however deep
        ("example.com/foo/a/b:2", [
            ("mirror-0.example/mirror-for-foo/a/b:2", False, "mirror-0.example"),
            ("mirror-1.example:5000/mirrors/foo/a/b:2", True, "mirror-1.example:5000"),
            ("internal.example.net/bar/a/b:2", False, "internal.example.net"),
        ]),
        # a prefix ends at a '/': example.com/foobar is not under example.com/foo
        ("example.com/foobar/x:1", [("all.example/foobar/x:1", True, "all.example")]),
        # prefix defaults to location
        ("plain.example:5000/a/b:t", [("plain.example:5000/a/b:t", True, "plain.example:5000")]),
        # a host with another port is another registry
        ("plain.example:5001/a:t", [("plain.example:5001/a:t", False, "plain.example:5001")]),
        # docker.io prefixes match the normalised name
        ("busybox:1", [("hub-cache.example/busybox:1", False, "hub-cache.example")]),
        ("docker.io/library/busybox", [
            ("hub-cache.example/busybox:latest", False, "hub-cache.example"),
        ]),
        ("busyboxes", [("docker.io/library/busyboxes:latest", False, "docker.io")]),
        # the whole repository as prefix
        ("quay.io/org/app:1", [("cache.example/app:1", False, "cache.example")]),
    ],
)  # fmt: skip
def test_endpoints(tmp_path: Path, text: str, expected: list[tuple[str, bool, str]]) -> None:
    config = RegistryConfig.load(config_file(tmp_path, MIRRORED))
    assert endpoints(config, text) == expected


def test_digest_references_keep_the_digest_and_drop_the_tag(tmp_path: Path) -> None:
    config = RegistryConfig.load(config_file(tmp_path, MIRRORED))
    assert endpoints(config, f"example.com/foo/image:1@{DIGEST}") == [
        (f"mirror-0.example/mirror-for-foo/image@{DIGEST}", False, "mirror-0.example"),
        (f"mirror-1.example:5000/mirrors/foo/image@{DIGEST}", True, "mirror-1.example:5000"),
        (f"internal.example.net/bar/image@{DIGEST}", False, "internal.example.net"),
    ]
    assert endpoints(RegistryConfig(), f"busybox@{DIGEST}") == [
        (f"docker.io/library/busybox@{DIGEST}", False, "docker.io")
    ]


def test_mirror_by_digest_only(tmp_path: Path) -> None:
    config = RegistryConfig.load(config_file(tmp_path, MIRRORED))
    assert [e.reference_string for e in config.endpoints(parse("quay.io/org/app:1"))] == [
        "cache.example/app:1"
    ]
    assert [e.reference_string for e in config.endpoints(parse(f"quay.io/org/app@{DIGEST}"))] == [
        f"mirror.example/app@{DIGEST}",
        f"cache.example/app@{DIGEST}",
    ]


def test_longest_prefix_wins_whatever_the_order() -> None:
    config = RegistryConfig.from_dict(
        {
            "registry": [
                {"prefix": "quay.io", "location": "short.example"},
                {"prefix": "quay.io/org", "location": "long.example/o"},
            ]
        }
    )
    assert endpoints(config, "quay.io/org/x") == [
        ("long.example/o/x:latest", False, "long.example")
    ]
    assert endpoints(config, "quay.io/other/x") == [
        ("short.example/other/x:latest", False, "short.example")
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("[::2]:5000", False),
        ("10.0.0.1:5000", False),
        ("localhost.example", False),
        ("quay.io", False),
    ],
)
def test_loopback_hosts_are_insecure(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    [endpoint] = RegistryConfig().endpoints(parse(f"{host}/x"))
    assert endpoint.insecure is loopback


def test_rewrite_without_repository_path_is_a_config_error() -> None:
    config = RegistryConfig.from_dict(
        {"registry": [{"prefix": "quay.io/org/app", "location": "cache.example"}]}
    )
    with pytest.raises(InvalidConfig, match="'cache.example' rewrites to 'cache.example:1'"):
        config.endpoints(parse("quay.io/org/app:1"))


def test_credentials_by_host(tmp_path: Path) -> None:
    text = f"""
[auth."127.0.0.1:5000"]
username = "u"
password = "{SECRET}"

[auth."index.docker.io"]
identitytoken = "tok"
"""
    config = RegistryConfig.load(config_file(tmp_path, text))
    assert config.credentials("127.0.0.1:5000") == Credentials("u", SECRET)
    assert config.credentials("127.0.0.1:5001") is None
    assert config.credentials("127.0.0.1") is None
    assert config.credentials("docker.io") == Credentials(identity_token="tok")
    assert config.credentials("registry-1.docker.io") == Credentials(identity_token="tok")
    assert SECRET not in repr(config)


def test_credentials_never_show_secrets() -> None:
    creds = Credentials("alice", SECRET)
    token = Credentials(identity_token=SECRET)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr(token), str(token)):
        assert SECRET not in text
    assert repr(creds) == "Credentials(username='alice', password=<redacted>)"
    assert repr(token) == "Credentials(username='', identity_token=<redacted>)"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "need a username and a password, or an identity token"),
        ({"username": "u"}, "need a username and a password"),
        ({"password": SECRET}, "need a username and a password"),
        ({"username": "a:b", "password": SECRET}, "username must not contain ':'"),
        ({"password": SECRET, "identity_token": "t"}, "not both"),
    ],
)
def test_credentials_validation(kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidConfig, match=reason) as caught:
        Credentials(**kwargs)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("unqualified-search-registries = []", "unknown key 'unqualified-search-registries'"),
        ("registry = 1", "registry must be an array of tables"),
        ("[[registry]]\ninsecure = true", r"\[\[registry\]\] #1: needs a prefix or a location"),
        ('[[registry]]\nlocation = "q.io"\nblocked = true', "unknown key 'blocked'"),
        ('[[registry]]\nlocation = "q.io"\ninsecure = "yes"', "insecure must be true or false"),
        ('[[registry]]\nlocation = ""', "location must be a non-empty string"),
        ('[[registry]]\nprefix = "busybox"', "prefix: invalid registry location 'busybox'"),
        ('[[registry]]\nprefix = "q.io/x:1"', "invalid path component 'x:1'"),
        ('[[registry]]\nprefix = "q.io/X"', "must be lowercase"),
        ('[[registry]]\nprefix = "*.q.io"', "invalid registry host"),
        ('[[registry]]\nlocation = "q.io"\n[[registry]]\nprefix = "q.io"', "defined twice"),
        ('[[registry]]\nlocation = "q.io"\n[[registry.mirror]]\ninsecure = true',
         r"\[\[registry.mirror\]\] #1: needs a location"),
        ('[[registry]]\nlocation = "q.io"\n[[registry.mirror]]\nlocation = "m.io"\nx = 1',
         "unknown key 'x'"),
        ('[auth."q.io/ns"]\nusername = "u"\npassword = "p"', "'q.io/ns' is not a host"),
        ('[auth."h.io"]\nusername = "u"\npassword = "p"\nemail = "e"', "unknown key 'email'"),
        (f'[auth."h.io"]\npassword = "{SECRET}"', "need a username and a password"),
        (f'[auth."h.io"]\nusername = "u"\npassword = "{SECRET}"\nidentitytoken = "{SECRET}"',
         "not both"),
        ('[auth."h.io"]\nusername = "u"\npassword = 12345678', "password must be a non-empty"),
        ('[auth."docker.io"]\nidentitytoken = "a"\n[auth."index.docker.io"]\nidentitytoken = "b"',
         "credentials for docker.io are given twice"),
        ('[auth]\n"h.io" = 1', "must be a table"),
        ("[[registry]\n", "parse registries config"),
    ],
)  # fmt: skip
def test_config_errors(tmp_path: Path, text: str, reason: str) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(InvalidConfig, match=reason) as caught:
        RegistryConfig.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert SECRET not in message and "12345678" not in message
    assert caught.value.__cause__ is None  # nothing more to leak through the chain


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "registries.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidConfig, match="not utf-8"):
        RegistryConfig.load(path)


def test_config_unreadable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="read registries config"):
        RegistryConfig.load(tmp_path)  # a directory


def test_readable_config_with_credentials_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="images.registries"):
        RegistryConfig.load(config_file(tmp_path, DESIGN_EXAMPLE, mode=0o644))
    assert "readable by group or others" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="images.registries"):
        RegistryConfig.load(config_file(tmp_path, DESIGN_EXAMPLE, mode=0o600))
    assert caplog.text == ""


def read_auth(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    result: dict[str, dict[str, dict[str, str]]] = json.loads(path.read_text())
    return result


def test_write_auth_file(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    path = write_auth_file(directory, "127.0.0.1:5000", Credentials("u", SECRET))
    assert path.parent == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = read_auth(path)["auths"]["127.0.0.1:5000"]
    assert entry == {"auth": base64.b64encode(f"u:{SECRET}".encode()).decode()}
    assert base64.b64decode(entry["auth"]) == f"u:{SECRET}".encode()
    second = write_auth_file(directory, "127.0.0.1:5000", Credentials("u", SECRET))
    assert second != path  # concurrent pulls never share a file
    path.unlink()
    second.unlink()
    assert list(directory.iterdir()) == []


def test_write_auth_file_identity_token(tmp_path: Path) -> None:
    path = write_auth_file(tmp_path / "a", "index.docker.io", Credentials(identity_token=SECRET))
    assert read_auth(path) == {
        "auths": {
            "docker.io": {"auth": base64.b64encode(b"<token>:").decode(), "identitytoken": SECRET}
        }
    }
    path = write_auth_file(tmp_path / "a", "q.io", Credentials("bob", identity_token=SECRET))
    assert base64.b64decode(read_auth(path)["auths"]["q.io"]["auth"]) == b"bob:"


def test_write_auth_file_refuses_an_open_directory(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(InvalidConfig, match=f"{directory} must be a directory that only we"):
        write_auth_file(directory, "q.io", Credentials("u", SECRET))
    assert list(directory.iterdir()) == []


def test_write_auth_file_refuses_a_bad_host(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="invalid registry host"):
        write_auth_file(tmp_path / "a", "https://q.io", Credentials("u", SECRET))


def test_auth_file_deletes_after_use(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    with (
        pytest.raises(RuntimeError),
        auth_file(directory, "q.io", Credentials("u", SECRET)) as path,
    ):
        assert path.exists()
        raise RuntimeError("pull failed")
    assert not path.exists()
    assert list(directory.iterdir()) == []
