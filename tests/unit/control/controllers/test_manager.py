"""The controller manager's --controllers selection, and the controllers it runs."""

from __future__ import annotations

import argparse
from typing import cast

import pytest

from control.controllers.main import duration
from control.controllers.manager import ControllerManager, enabled
from kubeapi.client import Client

ALL = [
    "replicaset", "deployment", "serviceaccount", "endpoint", "namespace", "nodelifecycle",
    "taint-eviction-controller", "garbagecollector",
]  # fmt: skip


def test_enabled() -> None:
    assert enabled(ALL, ["*"]) == set(ALL)
    assert enabled(ALL, ["*", "-nodelifecycle"]) == set(ALL) - {"nodelifecycle"}
    assert enabled(ALL, ["endpoint", "namespace"]) == {"endpoint", "namespace"}
    assert enabled(ALL, ["-garbagecollector", "*"]) == set(ALL) - {"garbagecollector"}
    with pytest.raises(ValueError, match="unknown controller 'bogus'"):
        enabled(ALL, ["*", "-bogus"])


def test_the_manager_runs_every_controller_unless_told() -> None:
    client = cast(Client, None)  # nothing is sent before `run`
    assert [c.name for c in ControllerManager(client).controllers] == ALL
    fewer = ControllerManager(client, controllers=("*", "-nodelifecycle", "-garbagecollector"))
    assert "nodelifecycle" not in [c.name for c in fewer.controllers]
    assert len(fewer.controllers) == len(ALL) - 2


def test_duration_flags() -> None:
    assert duration("40s") == 40.0
    assert duration("1m") == 60.0
    assert duration("500ms") == 0.5
    assert duration("2.5") == 2.5
    for bad in ("soon", "-1s"):
        with pytest.raises(argparse.ArgumentTypeError, match="duration"):
            duration(bad)
