"""ExecSync's timeout against a real container (root): the command is killed and
gone, as critest's "execSync with timeout" checks."""

from __future__ import annotations

import grpc
import pytest

from tests.integration.cri.support import NEEDS_CRI, Cri

pytestmark = NEEDS_CRI


def test_timed_out_command_is_gone(cri: Cri) -> None:
    sandbox = cri.run_sandbox("timeout")
    container = cri.create(sandbox, "timeout", ["sh", "-c", "top"])
    cri.start_container(container)
    with pytest.raises(grpc.RpcError) as raised:
        cri.exec(container, ["sleep", "4321"], timeout=1)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # As `pgrep sleep` (busybox-static has no pgrep): zombies count too.
    left = cri.exec(container, ["sh", "-c", "grep -l '(sleep)' /proc/[0-9]*/stat || true"])
    assert (left.stdout.strip(), left.stderr) == (b"", b"")
