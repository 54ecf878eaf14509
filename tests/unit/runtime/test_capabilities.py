from __future__ import annotations

from runtime import capabilities
from runtime.process import drop_privileges
from runtime.testing import Call, RecordingSyscalls


def test_parse_masks_and_unknown_names() -> None:
    sets = capabilities.parse(
        {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_FUTURE"], "effective": ["CAP_KILL"]}, 40
    )
    assert sets.bounding == (1 << 0) | (1 << 5)
    assert sets.effective == 1 << 5
    assert sets.permitted == 0
    assert sets.unknown == ["CAP_FUTURE"]
    # A capability the kernel does not know (above cap_last_cap) is unknown too.
    assert capabilities.parse({"bounding": ["CAP_CHECKPOINT_RESTORE"]}, 39).unknown == [
        "CAP_CHECKPOINT_RESTORE"
    ]


def test_names_round_trip() -> None:
    assert capabilities.names(0x20000420) == ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]


def test_drop_privileges_order() -> None:
    calls = RecordingSyscalls()
    warnings: list[str] = []
    process = {
        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6]},
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL", "CAP_NOPE"],
        },
    }
    drop_privileges(calls, process, last_cap=40, warn=warnings.append)
    names = [c.name for c in calls.calls if isinstance(c, Call)]
    dropped = [c.args[0] for c in calls.of("drop_bounding_cap")]
    assert 5 not in dropped and 10 not in dropped and len(dropped) == 39
    rest = [n for n in names if n != "drop_bounding_cap"]
    assert rest == [
        "setgroups",
        "set_keep_caps",
        "setresgid",
        "setresuid",
        "set_keep_caps",
        "capset",
        "clear_ambient_caps",
        "raise_ambient_cap",
    ]
    assert calls.of("setgroups")[0].args == ((5, 6),)
    assert calls.of("capset")[0].args == (1 << 5, 1 << 5, 1 << 5)
    assert warnings == ["unknown capabilities ignored: CAP_NOPE"]
