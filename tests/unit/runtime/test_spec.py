from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import default_spec
from runtime.errors import SpecError
from runtime.spec import load_bundle, namespace_map, validate


def spec(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(default_spec(["sh"]))
    config.update(changes)
    return config


def test_default_spec_is_valid() -> None:
    validate(spec())


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c.pop("ociVersion"), "ociVersion"),
        (lambda c: c.update(ociVersion="2.0.0"), "ociVersion"),
        (lambda c: c.pop("root"), "root"),
        (lambda c: c["root"].pop("path"), "root.path"),
        (lambda c: c.pop("process"), "process"),
        (lambda c: c["process"].update(args=[]), "process.args"),
        (lambda c: c["process"].update(args=["sh", 1]), "process.args"),
        (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
        (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0]"),
        (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
        (lambda c: c["process"].update(terminal="yes"), "process.terminal"),
        (
            lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
            "process.rlimits[0].type",
        ),
        (
            lambda c: c["process"].update(
                rlimits=[{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]
            ),
            "process.rlimits[0]",
        ),
        (lambda c: c["process"].update(oomScoreAdj=5000), "process.oomScoreAdj"),
        (
            lambda c: c["process"]["capabilities"].update(sideways=[]),
            "process.capabilities.sideways",
        ),
        (
            lambda c: c["process"]["capabilities"]["bounding"].append("CAP_TEST"),
            "process.capabilities.bounding[3]",
        ),
        (lambda c: c["mounts"].append({"destination": "rel"}), "mounts[6].destination"),
        (lambda c: c["mounts"].append({"destination": "/x", "options": "ro"}), "mounts[6].options"),
        (lambda c: c.update(hooks={"prestart": [{"path": "rel"}]}), "hooks.prestart[0].path"),
        (lambda c: c.update(hooks={"onboot": []}), "hooks.onboot"),
        (
            lambda c: c.update(hooks={"poststop": [{"path": "/x", "timeout": 0}]}),
            "hooks.poststop[0].timeout",
        ),
        (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces[5].type"),
        (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[5].type"),
        (
            lambda c: c["linux"]["namespaces"].append({"type": "user"}),
            "linux.uidMappings",
        ),
        (
            lambda c: c["linux"].update(namespaces=[{"type": "pid"}]),
            "hostname",
        ),
        (lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}), "linux.sysctl.kernel.panic"),
        (lambda c: c["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation"),
        (lambda c: c["linux"].update(maskedPaths=["relative"]), "linux.maskedPaths"),
        (
            lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "q"}]),
            "linux.devices[0].type",
        ),
        (
            lambda c: c["linux"]["namespaces"].append({"type": "ipc", "path": "/no/such/ns"}),
            "linux.namespaces[5].type",
        ),
    ],
)
def test_bad_config_names_the_field(edit: Any, field: str) -> None:
    config = spec()
    edit(config)
    with pytest.raises(SpecError) as info:
        validate(config)
    assert str(info.value).startswith(f"config.json: {field}: "), str(info.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [("linux", "intelRdt"), ("linux", "personality"), ("linux", "timeOffsets"),
     ("process", "scheduler"), ("process", "ioPriority")],
)  # fmt: skip
def test_known_but_unsupported_settings_are_refused(section: str, key: str) -> None:
    config = spec()
    config[section][key] = {"domain": "LINUX"}
    with pytest.raises(SpecError, match=f"^config.json: {section}.{key}: is not supported"):
        validate(config)


def test_unknown_properties_are_ignored() -> None:
    config = spec()
    config["somethingNew"] = {"a": 1}
    config["linux"]["futureKnob"] = True
    config["process"]["futureKnob"] = True
    validate(config)


def test_sysctl_needs_its_namespace() -> None:
    config = spec()
    config["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts"}]
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    with pytest.raises(SpecError, match="needs a network namespace"):
        validate(config)
    config["linux"]["namespaces"].append({"type": "network"})
    validate(config)


def test_hostname_needs_uts_namespace() -> None:
    config = spec()
    config["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(SpecError, match=r"^config.json: hostname: "):
        validate(config)


def test_load_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no config.json"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(SpecError, match="must be a JSON object"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(spec()))
    assert load_bundle(str(tmp_path))["process"]["args"] == ["sh"]


def test_namespace_map_marks_new_and_joined() -> None:
    config = spec()
    config["linux"]["namespaces"].append({"type": "cgroup"})
    config["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    validate(config)
    assert namespace_map(config) == {
        "pid": "",
        "network": "/proc/self/ns/net",
        "ipc": "",
        "uts": "",
        "mount": "",
        "cgroup": "",
    }
