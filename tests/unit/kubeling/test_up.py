"""`kubeling up`'s pieces without root: children restarted with back-off and stopped,
leftovers of a killed `up` found by pid file, credentials and kubeconfigs that the
API client accepts, the policy, cgroup removal on a fake tree, and the one-line
refusals of `up`, `down` and `kubeconfig`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from kubeapi.client import load_kubeconfig
from kubeling import up
from kubeling.cluster import Layout, issue_credentials, policy
from kubeling.cluster_processes import Children, alive, stop_leftovers


def layout(tmp_path: Path) -> Layout:
    made = Layout(tmp_path / "data", tmp_path / "run", tmp_path / "log", tmp_path / "etc")
    made.make()
    return made


def wait_until(probe: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_dead_child_is_reported_and_restarted_with_back_off(tmp_path: Path) -> None:
    said: list[str] = []
    children = Children(tmp_path, said.append)
    child = children.start("flaky", [sys.executable, "-c", "raise SystemExit(3)"],
                           tmp_path / "flaky.log")  # fmt: skip
    first = child.pid
    assert (tmp_path / "flaky.pid").read_text().strip() == str(first)
    wait_until(lambda: child.process is not None and child.process.poll() is not None)
    children.check()
    assert child.exits == [3]
    assert said[-1].startswith(f"flaky (pid {first}) exited with status 3; restarting it in 1s")
    children.check()  # the back-off has not passed
    assert child.pid == first

    def restarted() -> bool:
        children.check()
        return child.pid != first

    wait_until(restarted, timeout=5)
    assert said[-1] == f"restarted flaky (pid {child.pid})"
    assert child.backoff == 2.0 and child.restarts == 1
    assert "kubeling up starts" in (tmp_path / "flaky.log").read_text()
    children.stop("flaky")
    assert not (tmp_path / "flaky.pid").exists()


def test_stop_terminates_a_running_child(tmp_path: Path) -> None:
    said: list[str] = []
    children = Children(tmp_path, said.append)
    child = children.start("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    pid = child.pid
    children.stop("sleeper")
    assert not alive(pid)
    assert said == [f"stopping sleeper (pid {pid})"]


def test_leftovers_of_a_killed_up_are_stopped(tmp_path: Path) -> None:
    # A process whose command line names kubeling, as the children of `up` do.
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kubeling"])
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "apiserver.pid").write_text(f"{leftover.pid}\n")
        (tmp_path / "other.pid").write_text(f"{unrelated.pid}\n")
        said: list[str] = []
        stop_leftovers(tmp_path, said.append)
        assert leftover.wait(10) is not None
        assert unrelated.poll() is None  # not a kubeling process: left alone
        assert said == [f"stopping apiserver (pid {leftover.pid}) left running by an earlier up"]
        assert not list(tmp_path.glob("*.pid"))
    finally:
        for process in (leftover, unrelated):
            process.kill()
            process.wait()


def test_credentials_give_kubeconfigs_with_certificates_of_the_ca(tmp_path: Path) -> None:
    made = layout(tmp_path)
    credentials = issue_credentials(
        made, server="https://127.0.0.1:6443", node_name="n1", node_addresses=("10.0.0.7",)
    )
    config = load_kubeconfig(credentials.kubelet)
    assert config.server == "https://127.0.0.1:6443"
    assert config.ca_data == credentials.ca.read_bytes()
    certificate = x509.load_pem_x509_certificate(config.client_certificate)
    assert certificate.subject.rfc4514_string() == "O=system:nodes,CN=system:node:n1"
    assert certificate.issuer == x509.load_pem_x509_certificate(config.ca_data).subject
    scheduler = x509.load_pem_x509_certificate(
        load_kubeconfig(credentials.scheduler).client_certificate
    )
    assert scheduler.subject.rfc4514_string() == "CN=system:kube-scheduler"
    assert oct(credentials.kubelet.stat().st_mode & 0o777) == "0o600"
    kubelet_client = made.pki_dir / "apiserver-kubelet-client.crt"
    subject = x509.load_pem_x509_certificate(kubelet_client.read_bytes()).subject
    assert subject.rfc4514_string() == "O=system:masters,CN=kube-apiserver-kubelet-client"
    serving = x509.load_pem_x509_certificate(credentials.kubelet_serving.certificate.read_bytes())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1", "10.0.0.7",
    }  # fmt: skip
    assert json.loads(made.policy_file.read_text()) == policy()
    # A second start keeps the certificates it issued.
    before = credentials.kubelet_serving.certificate.read_bytes()
    issue_credentials(
        made, server="https://127.0.0.1:6443", node_name="n1", node_addresses=("10.0.0.7",)
    )
    assert credentials.kubelet_serving.certificate.read_bytes() == before


def test_the_policy_lets_nodes_touch_their_resources_only() -> None:
    rules = policy()["rules"]
    nodes = next(r for r in rules if r.get("groups") == ["system:nodes"])
    assert "*" not in nodes["resources"]
    assert {"nodes/status", "pods/status", "leases", "events"} <= set(nodes["resources"])


def test_remove_pod_cgroups_deepest_first(tmp_path: Path) -> None:
    for hierarchy in ("memory", "cpu"):
        (tmp_path / hierarchy / "root" / "kubepods" / "burstable" / "pod1").mkdir(parents=True)
    (tmp_path / "memory" / "root" / "other").mkdir()
    assert up.remove_pod_cgroups("/root", mount=tmp_path) == 7
    assert not (tmp_path / "memory" / "root" / "kubepods").exists()
    assert (tmp_path / "memory" / "root" / "other").is_dir()  # not a pod cgroup: kept
    assert not (tmp_path / "cpu" / "root").exists()  # empty: removed with its pods


def test_up_refuses_without_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up.os, "geteuid", lambda: 1000)
    assert up.main_up([]) == 1
    assert "needs root" in capsys.readouterr().err


def test_down_says_when_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert up.main_down(["--run-dir", str(tmp_path)]) == 1
    assert "kubeling up is not running" in capsys.readouterr().err


def test_running_pid_is_the_lock_holder(tmp_path: Path) -> None:
    made = layout(tmp_path)
    assert up.running_pid(made) == 0
    made.pid_file.write_text("4242\n")
    assert up.running_pid(made) == 0  # a pid file without the lock: a dead up
    with up.holding(made.lock_file) as got:
        assert got
        holder = subprocess.run(
            [sys.executable, "-c", "from kubeling import up; from kubeling.cluster import Layout;"
             "from pathlib import Path; import sys; p = Path(sys.argv[1]);"
             "print(up.running_pid(Layout(p / 'data', p / 'run', p / 'log', p / 'etc')))",
             str(tmp_path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert holder.stdout.strip() == "4242"


def test_kubeconfig_prints_the_admin_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "admin.kubeconfig").write_text('{"kind": "Config"}\n')
    out = io.StringIO()
    assert up.main_kubeconfig(["--config-dir", str(tmp_path)], out) == 0
    assert out.getvalue() == '{"kind": "Config"}\n'


def test_kubeconfig_without_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert up.main_kubeconfig(["--config-dir", str(tmp_path)]) == 1
    assert "run `kubeling up` first" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="the flag checks come after the root check")
def test_up_refuses_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert up.main_up(["--pod-cidr", "10.0.0.0/33"]) == 2
    assert "10.0.0.0/33" in capsys.readouterr().err
    assert up.main_up(["--listen", "nowhere"]) == 2
    assert "--listen" in capsys.readouterr().err
