"""QoS classes, container resources and pod cgroup paths as Kubernetes computes them."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet.pods.qos import (
    BESTEFFORT,
    BURSTABLE,
    GUARANTEED,
    container_resources,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    oom_score_adj,
    pod_cgroup_limits,
    pod_cgroup_parent,
    qos_class,
)

GIB = 1024**3


def _pod(*resources: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": "x", "resources": r} for i, r in enumerate(resources)]
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = [
            {"name": f"i{i}", "image": "x", "resources": r} for i, r in enumerate(init)
        ]
    return {"metadata": {"uid": "u1"}, "spec": spec}


BOTH = {"cpu": "500m", "memory": "128Mi"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([{}], BESTEFFORT),
        ([{"requests": {"cpu": "0"}}], BESTEFFORT),  # zero is no request
        ([{"limits": BOTH}], GUARANTEED),  # requests default to limits
        ([{"requests": BOTH, "limits": BOTH}], GUARANTEED),
        ([{"requests": BOTH, "limits": BOTH}, {"limits": BOTH}], GUARANTEED),
        ([{"requests": {"cpu": "100m"}, "limits": BOTH}], BURSTABLE),
        ([{"limits": {"cpu": "1"}}], BURSTABLE),  # memory not limited
        ([{"requests": BOTH}], BURSTABLE),
        ([{"limits": BOTH}, {}], BURSTABLE),
        ([{"requests": {"ephemeral-storage": "1Gi"}}], BESTEFFORT),  # not a QoS resource
    ],
)
def test_qos_class(resources: list[dict[str, Any]], expected: str) -> None:
    assert qos_class(_pod(*resources)) == expected


def test_init_containers_count_for_the_class() -> None:
    assert qos_class(_pod({"limits": BOTH}, init=[{}])) == BURSTABLE
    assert qos_class(_pod({}, init=[{"requests": {"cpu": "1"}}])) == BURSTABLE


def test_status_qos_class_wins_over_computing() -> None:
    pod = _pod({})
    pod["status"] = {"qosClass": GUARANTEED}
    assert pod_cgroup_parent(pod, "/") == "/kubepods/podu1"


@pytest.mark.parametrize(
    ("resources", "root", "expected"),
    [
        ({"limits": BOTH}, "/", "/kubepods/podu1"),
        ({"requests": {"cpu": "1"}}, "/", "/kubepods/burstable/podu1"),
        ({}, "/", "/kubepods/besteffort/podu1"),
        ({}, "/test-root/", "/test-root/kubepods/besteffort/podu1"),
    ],
)
def test_pod_cgroup_parent(resources: dict[str, Any], root: str, expected: str) -> None:
    assert pod_cgroup_parent(_pod(resources), root) == expected


def test_shares_and_quota_conversions() -> None:
    assert milli_cpu_to_shares(0) == 2
    assert milli_cpu_to_shares(1) == 2
    assert milli_cpu_to_shares(1000) == 1024
    assert milli_cpu_to_shares(250) == 256
    assert milli_cpu_to_quota(0) == 0
    assert milli_cpu_to_quota(500) == 50_000
    assert milli_cpu_to_quota(5) == 1000  # the kernel's minimum


def test_oom_score_adj_by_class() -> None:
    assert oom_score_adj(GUARANTEED, 0, GIB) == -997
    assert oom_score_adj(BESTEFFORT, 0, GIB) == 1000
    assert oom_score_adj(BURSTABLE, GIB // 2, GIB) == 500
    assert oom_score_adj(BURSTABLE, GIB, GIB) == 2  # never as protected as Guaranteed
    assert oom_score_adj(BURSTABLE, 0, GIB) == 999  # never as exposed as BestEffort


def test_container_resources_from_requests_and_limits() -> None:
    pod = _pod(
        {
            "requests": {"cpu": "250m", "memory": "64Mi"},
            "limits": {"cpu": "1500m", "memory": "256Mi"},
        }
    )
    container = pod["spec"]["containers"][0]
    resources = container_resources(pod, container, memory_capacity=4 * GIB)
    assert resources.cpu_shares == 256
    assert (resources.cpu_quota, resources.cpu_period) == (150_000, 100_000)
    assert resources.memory_limit_in_bytes == 256 * 1024**2
    assert resources.oom_score_adj == 1000 - (1000 * 64 * 1024**2) // (4 * GIB)


def test_container_without_limits_has_no_quota() -> None:
    pod = _pod({})
    resources = container_resources(pod, pod["spec"]["containers"][0], memory_capacity=GIB)
    assert (resources.cpu_shares, resources.cpu_quota, resources.cpu_period) == (2, 0, 0)
    assert resources.memory_limit_in_bytes == 0
    assert resources.oom_score_adj == 1000


def test_pod_cgroup_limits() -> None:
    limited = pod_cgroup_limits(_pod({"limits": BOTH}, {"limits": BOTH}))
    assert limited.cpu_shares == 1024 and limited.cpu_quota == 100_000
    assert limited.memory_limit_in_bytes == 256 * 1024**2
    partly = pod_cgroup_limits(_pod({"limits": BOTH}, {"requests": {"cpu": "1"}}))
    assert partly.cpu_shares == 512 + 1024
    assert partly.cpu_quota == 0 and partly.memory_limit_in_bytes == 0  # one is unbounded
    # An init container bigger than the app containers sets the floor.
    big_init = pod_cgroup_limits(
        _pod({"limits": BOTH}, init=[{"limits": {"cpu": "2", "memory": "1Gi"}}])
    )
    assert big_init.cpu_quota == 200_000 and big_init.memory_limit_in_bytes == GIB
    assert pod_cgroup_limits(_pod({})).cpu_shares == 2
