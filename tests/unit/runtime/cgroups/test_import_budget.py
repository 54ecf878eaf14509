"""The create path must not import modules that runtime/__init__.py bans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .trees import hybrid_tree, populate

BANNED = ("re", "typing", "dataclasses", "pathlib", "logging", "argparse")

SCRIPT = """
import sys
from runtime.cgroups import open_manager
mgr = open_manager("/kubeling/c1", root=sys.argv[1])
mgr.create()
mgr.apply({
    "memory": {"limit": 1 << 26, "swap": 1 << 27},
    "cpu": {"shares": 512, "quota": 1000, "cpus": "0"},
    "pids": {"limit": 5},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
    "devices": [{"allow": False}],
})
mgr.add_process(1)
mgr.freeze()
mgr.thaw()
print("\\n".join(sorted(sys.modules)))
"""


def test_create_path_imports(tmp_path: Path) -> None:
    root = hybrid_tree(tmp_path)
    populate(root, "kubeling/c1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root)], check=True, capture_output=True, text=True
    ).stdout
    loaded = set(out.split())
    assert not loaded & set(BANNED)
    assert "runtime.cgroups.stats" not in loaded
    assert "runtime.cgroups.v2.memory" not in loaded  # memory is v1 here
