"""The kubelet's command line: durations, flags into KubeletConfig, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from kubelet.config import KubeletConfig
from kubelet.kubelet import Kubelet
from kubelet.main import build_parser, config_from_args, main, parse_duration
from kubelet.pods.dependencies import SyncError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10", 10.0),
        ("2.5", 2.5),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10x", "s10", "1m 30s", "-5", "5s-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


def test_flags_fill_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "--kubeconfig",
            "k.conf",
            "--node-name",
            "Node-A",
            "--root-dir",
            str(tmp_path),
            "--pod-manifest-path",
            str(tmp_path / "m"),
            "--port",
            "0",
            "--node-ip",
            "10.0.0.2",
            "--cluster-dns",
            "10.96.0.10,10.96.0.11",
            "--sync-frequency",
            "1m",
            "--node-status-update-frequency",
            "5s",
            "--cgroup-root",
            "/test",
            "--node-labels",
            "a=1,b=2",
            "--max-pods",
            "20",
            "--pod-cidr",
            "10.85.0.0/16",
        ]
    )
    config = config_from_args(args)
    assert config.node_name == "node-a" and config.root_dir == tmp_path
    assert config.pod_manifest_path == tmp_path / "m"
    assert config.port == 0 and config.node_ip == "10.0.0.2"
    assert config.cluster_dns == ["10.96.0.10", "10.96.0.11"]
    assert config.sync_frequency == 60 and config.node_status_update_frequency == 5
    assert config.cgroup_root == "/test" and config.node_labels == {"a": "1", "b": "2"}
    assert config.max_pods == 20 and config.pod_cidr == "10.85.0.0/16"
    assert config.pod_logs_root == tmp_path / "pod-logs"  # the default follows --root-dir


def test_pod_logs_dir_flag(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--kubeconfig", "k", "--pod-logs-dir", str(tmp_path)])
    assert config_from_args(args).pod_logs_root == tmp_path


def test_a_bad_hostname_becomes_a_sync_error(tmp_path: Path) -> None:
    kubelet = Kubelet.__new__(Kubelet)  # only the adapter's config is needed
    kubelet.config = KubeletConfig(kubeconfig="k", root_dir=tmp_path)
    pod: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"hostname": "No_Good"},
    }
    with pytest.raises(SyncError) as raised:
        kubelet._hostname(pod)
    assert raised.value.reason == "DNSConfigForming" and "No_Good" in raised.value.message
    pod["spec"] = {"hostname": "h" * 30, "subdomain": "s" * 30, "setHostnameAsFQDN": True}
    with pytest.raises(SyncError, match="FQDN .* is too long"):
        kubelet._hostname(pod)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--kubeconfig", "k", "--sync-frequency", "soon"], "invalid duration 'soon'"),
        (["--kubeconfig", "k", "--port", "70000"], "not in 0..65535"),
        (["--kubeconfig", "k", "--node-ip", "1.2.3"], "invalid IP address"),
        (["--kubeconfig", "k", "--cluster-dns", "10.0.0.1,x"], "invalid IP address 'x'"),
        (["--kubeconfig", "k", "--node-labels", "novalue"], "expected key=value"),
        (["--kubeconfig", "k", "--max-pods", "0"], "must be positive"),
        ([], "--kubeconfig"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kubeling kubelet: ") and error in err


def test_missing_kubeconfig_and_lonely_tls_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--kubeconfig", str(tmp_path / "nope")])
    assert exited.value.code == 2 and "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--kubeconfig", "k", "--tls-cert-file", "c.pem"])
    assert exited.value.code == 2 and "go together" in capsys.readouterr().err
