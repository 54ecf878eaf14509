"""`kubeling-runtime` (also `kubeling runtime`): runc's command line over
`runtime.container`.

    kubeling-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
        create <id> [--bundle B] [--pid-file F] [--console-socket S] [--preserve-fds N]
        start <id> | state <id> | pause <id> | resume <id> | ps <id> [--format json]
        run <id> [--bundle B] [--detach] [--pid-file F] [--console-socket S] [--keep]
        kill <id> [SIGNAL] [--all] | delete <id> [--force] | list [--format json] [-q]
        exec <id> [--process F | [options] -- args...] [--detach] [--pid-file F] [--tty]
        update <id> [--resources F|-] [--memory N] [--cpu-quota N] ... | version

Flags may come before or after the container id (runc accepts both), except for
`exec`, where everything after the id is the command. Errors are one line on stderr
(and in --log), exit status 1. The parser is hand-written: argparse's import alone
costs more than half a container start.
"""

from __future__ import annotations

import sys

from runtime import jsonio as json
from runtime import log
from runtime.errors import RuntimeFailure, SpecError
from runtime.signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.container import Runtime

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"


class UsageError(Exception):
    pass


# Per command: flag name -> (takes a value, repeatable); aliases map short names.
_GLOBAL_FLAGS = {
    "root": (True, False), "log": (True, False), "log-format": (True, False),
    "debug": (False, False), "systemd-cgroup": (False, False), "criu": (True, False),
    "rootless": (True, False),
}  # fmt: skip
_FLAGS: dict[str, dict[str, tuple[bool, bool]]] = {
    "create": {"bundle": (True, False), "pid-file": (True, False),
               "console-socket": (True, False), "preserve-fds": (True, False),
               "no-pivot": (False, False), "no-new-keyring": (False, False)},
    "run": {"bundle": (True, False), "pid-file": (True, False),
            "console-socket": (True, False), "preserve-fds": (True, False),
            "detach": (False, False), "keep": (False, False), "no-subreaper": (False, False),
            "no-pivot": (False, False), "no-new-keyring": (False, False)},
    "start": {}, "state": {}, "pause": {}, "resume": {},
    "kill": {"all": (False, False)},
    "delete": {"force": (False, False)},
    "list": {"format": (True, False), "quiet": (False, False)},
    "ps": {"format": (True, False)},
    "exec": {"process": (True, False), "detach": (False, False), "pid-file": (True, False),
             "console-socket": (True, False), "tty": (False, False), "cwd": (True, False),
             "env": (True, True), "user": (True, False), "additional-gids": (True, True),
             "cap": (True, True), "no-new-privs": (False, False),
             "preserve-fds": (True, False), "process-label": (True, False),
             "apparmor": (True, False), "ignore-paused": (False, False)},
    "update": {"resources": (True, False), "blkio-weight": (True, False),
               "cpu-period": (True, False), "cpu-quota": (True, False),
               "cpu-share": (True, False), "cpu-rt-period": (True, False),
               "cpu-rt-runtime": (True, False), "cpuset-cpus": (True, False),
               "cpuset-mems": (True, False), "memory": (True, False),
               "memory-reservation": (True, False), "memory-swap": (True, False),
               "pids-limit": (True, False), "kernel-memory": (True, False),
               "kernel-memory-tcp": (True, False)},
    "version": {}, "features": {},
}  # fmt: skip
_SHORT = {
    "b": "bundle",
    "d": "detach",
    "f": "force",
    "a": "all",
    "q": "quiet",
    "p": "process",
    "t": "tty",
    "e": "env",
    "u": "user",
    "c": "cap",
    "g": "additional-gids",
    "r": "resources",
}
_SHORT_PER_COMMAND = {"list": {"f": "format"}, "ps": {"f": "format"}}


def parse_flags(
    args: list[str],
    flags: dict[str, tuple[bool, bool]],
    *,
    stop_after_positionals: int = 0,
    short: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Split `args` into flag values and positionals. With stop_after_positionals N,
    everything after the Nth positional is positional too (exec's command)."""
    values: dict[str, Any] = {}
    positionals: list[str] = []
    short_names = {**_SHORT, **(short or {})}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if stop_after_positionals and len(positionals) >= stop_after_positionals:
            positionals.append(arg)
            positionals.extend(args[index:])
            break
        if arg == "--":
            positionals.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        name, _, inline = arg.lstrip("-").partition("=")
        if not arg.startswith("--"):
            name = short_names.get(name, name)
        if name not in flags:
            raise UsageError(f"unknown flag {arg}")
        takes_value, repeatable = flags[name]
        if takes_value:
            if inline == "" and "=" not in arg:
                if index >= len(args):
                    raise UsageError(f"flag {arg} needs a value")
                inline = args[index]
                index += 1
            value: Any = inline
        else:
            value = inline.lower() not in ("false", "0") if inline else True
        if repeatable:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values, positionals


def _one_id(positionals: list[str], command: str) -> str:
    if len(positionals) != 1:
        raise UsageError(f"{command} takes exactly one container id")
    return positionals[0]


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not 0 < number < 65:
            raise UsageError(f"invalid signal {text}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    value: object = getattr(signal, name, None)
    if not isinstance(value, int) or name.startswith("SIG_"):
        raise UsageError(f"unknown signal {text}")
    return int(value)


def parse_size(text: str) -> int:
    """runc's RAMInBytes: 512, 512k, 64m, 1g (binary units), -1 for unlimited."""
    value = text.strip().lower()
    if value == "-1":
        return -1
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if value.endswith("b") and len(value) > 1 and value[-2] in "kmgt":
        value = value[:-1]
    suffix = value[-1] if value and value[-1] in "bkmgt" else ""
    number = value[: len(value) - len(suffix)]
    try:
        return int(float(number) * units[suffix])
    except ValueError:
        raise UsageError(f"invalid size {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        global_flags, rest = _split_global(args)
        log.configure(
            path=global_flags.get("log", ""),
            log_format=global_flags.get("log-format", "text"),
            debug=bool(global_flags.get("debug")),
        )
        if global_flags.get("systemd-cgroup"):
            raise UsageError("--systemd-cgroup is not supported: kubeling uses cgroupfs paths")
        if not rest:
            raise UsageError("no command given (create, start, run, state, kill, delete, "
                             "exec, list, ps, pause, resume, update, version)")  # fmt: skip
        command, command_args = rest[0], rest[1:]
        if command not in _FLAGS:
            raise UsageError(f"unknown command {command!r}")
        if command == "version":
            print(f"kubeling-runtime version {VERSION}\nspec: {SPEC_VERSION}")
            return 0
        from runtime.container import DEFAULT_ROOT, Runtime

        runtime = Runtime(global_flags.get("root") or DEFAULT_ROOT)
        handler = _COMMANDS[command]
        return handler(runtime, command_args)
    except UsageError as e:
        return _fail(str(e), 2)
    except (RuntimeFailure, OSError, ValueError) as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    """One line: in the log (stderr without --log, as runc), and on stderr too when
    the log is a file, so a person running the command sees why."""
    log.error(message)
    if log.has_file():
        sys.stderr.write(f"kubeling-runtime: {message}\n")
        sys.stderr.flush()
    return code


def _split_global(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Global flags come before the command name."""
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "--":
        if args[index] in ("-v", "--version"):
            return {}, ["version"]
        if args[index] in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        name, _, inline = args[index].lstrip("-").partition("=")
        if name not in _GLOBAL_FLAGS:
            raise UsageError(f"unknown global flag {args[index]}")
        index += 1 if inline or not _GLOBAL_FLAGS[name][0] else 2
    values, _ = parse_flags(args[:index], _GLOBAL_FLAGS)
    return values, args[index:]


def _create(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["create"])
    container_id = _one_id(positionals, "create")
    runtime.create(
        container_id, flags.get("bundle") or ".",
        pid_file=flags.get("pid-file", ""), console_socket=flags.get("console-socket", ""),
        preserve_fds=_int_flag(flags, "preserve-fds"),
    )  # fmt: skip
    return 0


def _run(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["run"])
    container_id = _one_id(positionals, "run")
    detach = bool(flags.get("detach"))
    container = runtime.create(
        container_id, flags.get("bundle") or ".",
        pid_file=flags.get("pid-file", ""), console_socket=flags.get("console-socket", ""),
        preserve_fds=_int_flag(flags, "preserve-fds"), monitor=detach,
    )  # fmt: skip
    try:
        runtime.start(container_id)
    except BaseException:
        runtime.delete(container_id, force=True)
        raise
    if detach:
        return 0
    code = runtime.wait_init(container)
    if not flags.get("keep"):
        runtime.delete(container_id, force=True)
    return code


def _start(runtime: Runtime, args: list[str]) -> int:
    runtime.start(_one_id(parse_flags(args, {})[1], "start"))
    return 0


def _state(runtime: Runtime, args: list[str]) -> int:
    state = runtime.state(_one_id(parse_flags(args, {})[1], "state"))
    import json as pretty_json

    print(pretty_json.dumps(state, indent=2))
    return 0


def _kill(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["kill"])
    if not 1 <= len(positionals) <= 2:
        raise UsageError("kill takes a container id and an optional signal")
    sig = parse_signal(positionals[1]) if len(positionals) == 2 else signal.SIGTERM
    runtime.kill(positionals[0], sig, all_processes=bool(flags.get("all")))
    return 0


def _delete(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["delete"])
    if not positionals:
        raise UsageError("delete takes at least one container id")
    for container_id in positionals:
        runtime.delete(container_id, force=bool(flags.get("force")))
    return 0


def _pause(runtime: Runtime, args: list[str]) -> int:
    runtime.pause(_one_id(parse_flags(args, {})[1], "pause"))
    return 0


def _resume(runtime: Runtime, args: list[str]) -> int:
    runtime.resume(_one_id(parse_flags(args, {})[1], "resume"))
    return 0


def _list(runtime: Runtime, args: list[str]) -> int:
    flags, _ = parse_flags(args, _FLAGS["list"], short=_SHORT_PER_COMMAND["list"])
    states = runtime.list()
    if flags.get("quiet"):
        for state in states:
            print(state["id"])
    elif flags.get("format") == "json":
        print(json.dumps(states))
    elif flags.get("format", "table") != "table":
        raise UsageError(f"unknown format {flags['format']!r} (table or json)")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root")
                 for s in states]  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "   ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=False)
                ).rstrip()
            )
    return 0


def _ps(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["ps"], short=_SHORT_PER_COMMAND["ps"])
    if not positionals:
        raise UsageError("ps takes a container id")
    pids = runtime.pids(positionals[0])
    if flags.get("format") == "json":
        print(json.dumps(pids))
        return 0
    import subprocess

    ps_args = positionals[1:] or ["-ef"]
    output = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = output.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("ps output has no PID column")
    column = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0


def _update(runtime: Runtime, args: list[str]) -> int:
    from runtime.container import load_resources

    flags, positionals = parse_flags(args, _FLAGS["update"])
    container_id = _one_id(positionals, "update")
    resources: dict[str, Any] = {}
    if "resources" in flags:
        source = flags["resources"]
        if source == "-":
            text = sys.stdin.read()
        else:
            try:
                with open(source) as f:
                    text = f.read()
            except OSError as e:
                raise SpecError(f"read {source}: {e.strerror}") from None
        resources = load_resources(text, source)
    memory = resources.setdefault("memory", {})
    cpu = resources.setdefault("cpu", {})
    for flag, section, key, parse in (
        ("memory", memory, "limit", parse_size),
        ("memory-reservation", memory, "reservation", parse_size),
        ("memory-swap", memory, "swap", parse_size),
        ("kernel-memory", memory, "kernel", parse_size),
        ("kernel-memory-tcp", memory, "kernelTCP", parse_size),
        ("cpu-period", cpu, "period", int),
        ("cpu-quota", cpu, "quota", int),
        ("cpu-share", cpu, "shares", int),
        ("cpu-rt-period", cpu, "realtimePeriod", int),
        ("cpu-rt-runtime", cpu, "realtimeRuntime", int),
        ("cpuset-cpus", cpu, "cpus", str),
        ("cpuset-mems", cpu, "mems", str),
    ):
        if flag in flags:
            try:
                section[key] = parse(flags[flag])
            except ValueError:
                raise UsageError(f"invalid value for --{flag}: {flags[flag]!r}") from None
    if "pids-limit" in flags:
        resources["pids"] = {"limit": _int_flag(flags, "pids-limit")}
    if "blkio-weight" in flags:
        resources["blockIO"] = {"weight": _int_flag(flags, "blkio-weight")}
    for key in ("memory", "cpu"):
        if not resources[key]:
            del resources[key]
    for warning in runtime.update(container_id, resources):
        log.warning(warning)
    return 0


def _exec(runtime: Runtime, args: list[str]) -> int:
    flags, positionals = parse_flags(args, _FLAGS["exec"], stop_after_positionals=1)
    if not positionals:
        raise UsageError("exec takes a container id")
    container_id, command = positionals[0], positionals[1:]
    if "process" in flags:
        try:
            with open(flags["process"]) as f:
                process = json.loads(f.read())
        except OSError as e:
            raise SpecError(f"read {flags['process']}: {e.strerror}") from None
        except ValueError as e:
            raise SpecError(f"{flags['process']}: invalid JSON: {e}") from None
    else:
        if not command:
            raise UsageError("exec needs a command (or --process)")
        process = dict(runtime.load(container_id).config["process"])
        process["args"] = command
        process["terminal"] = bool(flags.get("tty"))
        process.pop("consoleSize", None)
        if "cwd" in flags:
            process["cwd"] = flags["cwd"]
        if "env" in flags:
            process["env"] = list(process.get("env", [])) + flags["env"]
        if "user" in flags:
            uid, _, gid = flags["user"].partition(":")
            try:
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            except ValueError:
                raise UsageError(f"--user takes uid[:gid], not {flags['user']!r}") from None
        if "additional-gids" in flags:
            process.setdefault("user", {})["additionalGids"] = [
                int(g) for g in flags["additional-gids"]
            ]
        if "cap" in flags:
            caps = dict(process.get("capabilities", {}))
            for kind in ("bounding", "effective", "permitted"):
                caps[kind] = list(caps.get(kind, [])) + flags["cap"]
            process["capabilities"] = caps
        if flags.get("no-new-privs"):
            process["noNewPrivileges"] = True
    return runtime.exec(
        container_id, process, detach=bool(flags.get("detach")),
        pid_file=flags.get("pid-file", ""), console_socket=flags.get("console-socket", ""),
        preserve_fds=_int_flag(flags, "preserve-fds"),
    )  # fmt: skip


def _features(runtime: Runtime, args: list[str]) -> int:
    from runtime.capabilities import CAPABILITY_NAMES
    from runtime.init import NAMESPACES
    from runtime.spec import HOOK_KINDS

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(__import__("runtime.rootfs").rootfs._FLAG_OPTIONS),
        "linux": {
            "namespaces": [kind for kind, _, _ in NAMESPACES],
            "capabilities": list(CAPABILITY_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False},
            "seccomp": {"enabled": True},
        },
    }
    import json as pretty_json

    print(pretty_json.dumps(features, indent=2))
    return 0


def _int_flag(flags: dict[str, Any], name: str) -> int:
    value = flags.get(name, 0)
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--{name} takes an integer, not {value!r}") from None


_COMMANDS = {
    "create": _create, "run": _run, "start": _start, "state": _state, "kill": _kill,
    "delete": _delete, "pause": _pause, "resume": _resume, "list": _list, "ps": _ps,
    "update": _update, "exec": _exec, "features": _features,
}  # fmt: skip

if __name__ == "__main__":
    sys.exit(main())
