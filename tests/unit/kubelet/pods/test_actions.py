"""computePodActions: sandbox (re)creation, init containers in order, restarts per
policy, spec changes and liveness failures."""

from __future__ import annotations

from kubelet.pods.actions import compute_pod_actions, container_hash
from kubelet.pods.runtime import ContainerState, PodRuntime
from tests.unit.kubelet.pods.factories import container, make_pod, runtime, sandbox

RUNNING, EXITED = ContainerState.RUNNING, ContainerState.EXITED
CREATED, UNKNOWN = ContainerState.CREATED, ContainerState.UNKNOWN


def actions(pod, view, failures=None):  # type: ignore[no-untyped-def]
    return compute_pod_actions(pod, view, liveness_failures=failures or {})


def test_new_pod_gets_a_sandbox_and_all_containers() -> None:
    pod = make_pod("a", "b")
    found = actions(pod, PodRuntime("uid-1"))
    assert found.create_sandbox and found.attempt == 0
    assert found.containers_to_start == ("a", "b")
    assert not found.init_to_start


def test_new_pod_with_init_containers_starts_the_first_only() -> None:
    found = actions(make_pod("app", init=("i1", "i2")), PodRuntime("uid-1"))
    assert found.create_sandbox and found.init_to_start == "i1"
    assert found.containers_to_start == ()


def test_dead_sandbox_is_recreated_with_the_next_attempt() -> None:
    pod = make_pod("a")
    view = runtime(
        container("a", EXITED, pod=pod, exit_code=137), sandboxes=(sandbox(ready=False, attempt=2),)
    )
    found = actions(pod, view)
    assert found.create_sandbox and found.kill_pod and found.attempt == 3
    assert found.containers_to_start == ("a",)


def test_sandbox_without_ip_or_duplicated_is_recreated() -> None:
    pod = make_pod("a")
    assert actions(pod, runtime(sandboxes=(sandbox(ip=""),))).create_sandbox
    two = (sandbox("sb2", created=2), sandbox("sb1", created=1))
    assert actions(pod, runtime(sandboxes=two)).create_sandbox
    host = make_pod("a", hostNetwork=True)
    assert actions(host, runtime(sandboxes=(sandbox(),))).create_sandbox  # network mode changed


def test_never_pod_whose_sandbox_died_is_not_recreated() -> None:
    pod = make_pod("a", restart_policy="Never")
    view = runtime(container("a", EXITED, pod=pod), sandboxes=(sandbox(ready=False),))
    found = actions(pod, view)
    assert found.kill_pod and not found.create_sandbox


def test_on_failure_recreation_skips_succeeded_containers() -> None:
    pod = make_pod("ok", "bad", restart_policy="OnFailure")
    view = runtime(
        container("ok", EXITED, pod=pod),
        container("bad", EXITED, pod=pod, exit_code=1),
        sandboxes=(sandbox(ready=False),),
    )
    assert actions(pod, view).containers_to_start == ("bad",)
    all_ok = runtime(
        container("ok", EXITED, pod=pod),
        container("bad", EXITED, pod=pod),
        sandboxes=(sandbox(ready=False),),
    )
    found = actions(pod, all_ok)
    assert found.kill_pod and not found.create_sandbox


def test_running_containers_are_kept() -> None:
    pod = make_pod("a")
    found = actions(pod, runtime(container("a", RUNNING, pod=pod)))
    assert found == found.__class__(sandbox_id="sb1")


def test_restart_policies_for_exited_containers() -> None:
    for policy, exit_code, restart in [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 2, False),
    ]:
        pod = make_pod("a", "keep", restart_policy=policy)
        view = runtime(
            container("a", EXITED, pod=pod, exit_code=exit_code),
            container("keep", RUNNING, pod=pod),
        )
        found = actions(pod, view)
        assert (found.containers_to_start == ("a",)) is restart, (policy, exit_code)
        assert not found.kill_pod


def test_all_exited_and_none_to_restart_kills_the_pod() -> None:
    pod = make_pod("a", restart_policy="Never")
    found = actions(pod, runtime(container("a", EXITED, pod=pod, exit_code=1)))
    assert found.kill_pod and found.containers_to_start == ()


def test_init_containers_run_in_order() -> None:
    pod = make_pod("app", init=("i1", "i2"))
    first_done = runtime(container("i1", EXITED, pod=pod, init=True))
    assert actions(pod, first_done).init_to_start == "i2"
    running = runtime(
        container("i1", EXITED, pod=pod, init=True),
        container("i2", RUNNING, pod=pod, init=True, created=20),
    )
    found = actions(pod, running)
    assert not found.init_to_start and found.containers_to_start == ()
    done = runtime(
        container("i1", EXITED, pod=pod, init=True),
        container("i2", EXITED, pod=pod, init=True, created=20),
    )
    assert actions(pod, done).containers_to_start == ("app",)


def test_failed_init_container_restarts_or_fails_the_pod() -> None:
    pod = make_pod("app", init=("i1",))
    failed = runtime(container("i1", EXITED, pod=pod, init=True, exit_code=1))
    assert actions(pod, failed).init_to_start == "i1"
    never = make_pod("app", init=("i1",), restart_policy="Never")
    found = actions(never, runtime(container("i1", EXITED, pod=never, init=True, exit_code=1)))
    assert found.init_failed and found.kill_pod and not found.init_to_start


def test_spec_change_kills_and_restarts() -> None:
    pod = make_pod("a")
    view = runtime(container("a", RUNNING, pod=pod))
    pod["spec"]["containers"][0]["image"] = "busybox:1.37"
    found = actions(pod, view)
    (kill,) = found.containers_to_kill
    assert kill.reason == "SpecChanged" and "definition changed" in kill.message
    assert found.containers_to_start == ("a",)


def test_liveness_failure_kills_and_restarts_per_policy() -> None:
    pod = make_pod("a")
    view = runtime(container("a", RUNNING, pod=pod, id_="cid"))
    found = actions(pod, view, {"cid": "Liveness probe failed: boom"})
    (kill,) = found.containers_to_kill
    assert kill.message == "Container a failed liveness probe, will be restarted"
    assert found.containers_to_start == ("a",)
    never = make_pod("a", restart_policy="Never")
    found = actions(never, runtime(container("a", RUNNING, pod=never, id_="cid")), {"cid": "x"})
    assert found.containers_to_start == () and found.kill_pod


def test_unknown_or_created_containers_are_killed_and_restarted() -> None:
    pod = make_pod("a")
    for state in (CREATED, UNKNOWN):
        found = actions(pod, runtime(container("a", state, pod=pod)))
        assert [k.reason for k in found.containers_to_kill] == ["Unknown"]
        assert found.containers_to_start == ("a",)


def test_container_hash_is_stable_and_sensitive() -> None:
    a = {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]}
    b = {"env": [{"value": "1", "name": "K"}], "image": "x", "name": "a"}
    assert container_hash(a) == container_hash(b)
    assert container_hash(a) != container_hash({**a, "image": "y"})
