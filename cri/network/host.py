"""Host settings the pod network needs, changed only when needed and journalled.

Host-wide changes (recorded in the journal, <state_dir>/host.json, before they are
made, with the value found):
- net.ipv4.ip_forward=1, when the config asks for pod egress (`ip_forward`);
- the br_netfilter module, loaded if /proc/sys/net/bridge is missing and the config
  allows it (`load_br_netfilter`): it makes bridged pod-to-pod traffic visible to
  iptables, as Kubernetes' service proxy requires. The bridge's own nf_call_iptables
  option is set on it (links.py), so the host-wide bridge-nf-call-iptables sysctl is
  never touched.

`restore()` puts each recorded sysctl back to the value found, unless someone else
changed it since (then it is left alone and only forgotten). A module loaded is not
unloaded: other bridges on the host may rely on it by then.

Per-interface settings of the pod bridge itself (forwarding, route_localnet) are not
journalled: they belong to the bridge and go away with it.

The sysctl tree is a parameter (tests pass a directory); keys are paths below it,
like "net/ipv4/ip_forward".
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cri.network.errors import NetworkError
from runtime.state import atomic_write

log = logging.getLogger(__name__)

PROC_SYS = Path("/proc/sys")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class HostSettings:
    """Reads and writes sysctls under `proc_sys`, journalling host-wide changes."""

    def __init__(
        self, journal: Path, *, proc_sys: Path = PROC_SYS, runner: Runner = subprocess.run
    ) -> None:
        self.journal = journal
        self.proc_sys = proc_sys
        self._runner = runner
        self._lock = threading.Lock()

    def read(self, key: str) -> str:
        try:
            return (self.proc_sys / key).read_text().strip()
        except OSError as e:
            raise NetworkError(f"read sysctl {key}: {e.strerror}") from None

    def write(self, key: str, value: str) -> None:
        try:
            (self.proc_sys / key).write_text(f"{value}\n")
        except OSError as e:
            raise NetworkError(f"write sysctl {key}={value}: {e.strerror}") from None
        log.debug("sysctl %s=%s", key, value)

    def ensure(self, key: str, value: str) -> bool:
        """Set a host-wide sysctl to `value`, journalling the value found first.
        Returns whether it had to change."""
        with self._lock:
            current = self.read(key)
            if current == value:
                return False
            record = self._load()
            sysctls = record.setdefault("sysctls", {})
            if key not in sysctls:  # keep the first value found across restarts
                sysctls[key] = {"original": current, "value": value}
            else:
                sysctls[key]["value"] = value
            self._save(record)
            self.write(key, value)
            log.info("changed sysctl %s from %s to %s", key, current, value)
            return True

    def ensure_module(self, module: str, present: Path) -> bool:
        """Load `module` with modprobe unless `present` (a path it creates) exists.
        Returns whether it was loaded."""
        if present.exists():
            return False
        with self._lock:
            record = self._load()
            modules = record.setdefault("modules", [])
            if module not in modules:
                modules.append(module)
            self._save(record)
        try:
            result = self._runner(["modprobe", module], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NetworkError(f"load module {module}: {e}") from None
        if result.returncode != 0:
            raise NetworkError(f"load module {module}: {result.stderr.strip()}")
        log.info("loaded module %s", module)
        return True

    def changes(self) -> dict[str, Any]:
        """What the journal records: {"sysctls": {key: {"original", "value"}},
        "modules": [...]}."""
        with self._lock:
            return self._load()

    def restore(self) -> list[str]:
        """Put journalled sysctls back; return the keys restored."""
        restored: list[str] = []
        with self._lock:
            record = self._load()
            for key, entry in sorted(record.get("sysctls", {}).items()):
                try:
                    current = self.read(key)
                except NetworkError:
                    continue
                if current == entry["value"]:
                    self.write(key, entry["original"])
                    restored.append(key)
                    log.info("restored sysctl %s to %s", key, entry["original"])
                else:
                    log.info("left sysctl %s at %s (changed by someone else)", key, current)
            record.pop("sysctls", None)
            if record:
                self._save(record)
            else:
                self.journal.unlink(missing_ok=True)
        return restored

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.journal.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise NetworkError(f"read {self.journal}: {e}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, record: dict[str, Any]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(str(self.journal), json.dumps(record, indent=1, sort_keys=True).encode())
