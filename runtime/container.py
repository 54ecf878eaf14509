"""The runtime's library API: the OCI lifecycle verbs over a state directory.

    create -> created -> start -> running -> (exit) stopped -> delete
                                 pause <-> resume

Each verb loads the container's state, checks one predicate of its status
(`runtime.state.can_*`) and acts. `create` registers an undo for everything it
acquires (state directory, cgroup, processes) and runs them in reverse when a later
step fails, so a failed create leaves nothing behind.

Process model: see `runtime.init`. `create` forks an intermediate process that
forks init and then stays as its monitor (records the exit status), so containers
outlive the caller and their exit codes survive it. `run` in the foreground makes
the caller a child subreaper that waits for init itself and forwards signals.
"""

from __future__ import annotations

import os
import time

from runtime import jsonio as json
from runtime import log
from runtime import state as st
from runtime.errors import ContainerInitError, InvalidState, NotFound, SpecError
from runtime.signals import signal
from runtime.spec import load_bundle, namespace_map, validate_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

    from runtime.channel import Channel
    from runtime.syscalls import Syscalls

DEFAULT_ROOT = "/run/kubeling/runtime"
DEFAULT_CGROUP_PARENT = "/kubeling"
# Device rules appended to linux.resources.devices at create, as runc's specconv
# does (AllowedDevices): mknod of any node, the default nodes, /dev/pts/*,
# /dev/ptmx and /dev/net/tun. Without them the devices cgroup refuses the mknod of
# /dev/null itself. (type, major, minor, access); None is a wildcard.
_ALLOWED_DEVICES = (
    ("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"),
    ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)  # fmt: skip


class WaitReadable:
    """What a create step waits for: `fd` readable (see `Runtime.create_steps`)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __repr__(self) -> str:
        return f"WaitReadable({self.fd})"


if TYPE_CHECKING:
    CreateSteps = Generator[WaitReadable, None, st.ContainerState]


def _linux_syscalls() -> Syscalls:
    from runtime.syscalls import LinuxSyscalls

    return LinuxSyscalls()


def _cgroup_path(container_id: str, config: dict[str, Any]) -> str:
    path = config["linux"].get("cgroupsPath") or ""
    return path or f"{DEFAULT_CGROUP_PARENT}/{container_id}"


def cgroup_resources(config: dict[str, Any]) -> dict[str, Any]:
    """linux.resources as applied at create: the config's device rules, then an allow
    rule per linux.devices node and the defaults every container needs."""
    linux = config["linux"]
    resources = dict(linux.get("resources", {}))
    rules = list(resources.get("devices", []))
    for device in linux.get("devices", []):
        if device["type"] != "p":
            rules.append({"allow": True, "type": "b" if device["type"] == "b" else "c",
                          "major": device["major"], "minor": device["minor"],
                          "access": "rwm"})  # fmt: skip
    for kind, major, minor, access in _ALLOWED_DEVICES:
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": access})  # fmt: skip
    resources["devices"] = rules
    return resources


def _open_cgroup(container_id: str, config: dict[str, Any]) -> Any:
    from runtime.cgroups import open_manager

    return open_manager(_cgroup_path(container_id, config))


class Runtime:
    """One runtime root (`--root`): create and operate containers under it."""

    __slots__ = ("_syscalls", "store")

    def __init__(self, root: str = DEFAULT_ROOT, syscalls: Syscalls | None = None) -> None:
        self.store = st.StateStore(root)
        self._syscalls = syscalls

    @property
    def syscalls(self) -> Syscalls:
        if self._syscalls is None:
            self._syscalls = _linux_syscalls()
        return self._syscalls

    # -- create -------------------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str = "",
        console_socket: str = "",
        preserve_fds: int = 0,
        monitor: bool = True,
        stdio: tuple[int, int, int] | None = None,
    ) -> st.ContainerState:
        """Set the container up and leave its init blocked until `start`.

        The container's stdin/stdout/stderr are the caller's, as with runc, unless
        `stdio` gives three fds for them (a supervisor's pipes or a log file)."""
        steps = self.create_steps(
            container_id, bundle, pid_file=pid_file, console_socket=console_socket,
            preserve_fds=preserve_fds, monitor=monitor, stdio=stdio,
        )  # fmt: skip
        while True:
            try:
                next(steps)  # the reads that follow a WaitReadable block instead
            except StopIteration as done:
                created: st.ContainerState = done.value
                return created

    def create_steps(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str = "",
        console_socket: str = "",
        preserve_fds: int = 0,
        monitor: bool = True,
        stdio: tuple[int, int, int] | None = None,
        caller_reaps: bool = False,
    ) -> CreateSteps:
        """`create` as a generator, for an event loop that creates several containers
        at once: most of a create is waiting for init to set itself up. It yields a
        `WaitReadable` before each read of the setup channel (resume it once that fd
        is readable) and returns the container's state (StopIteration.value).

        The first step forks: once it has returned (or raised), the child holds its
        copies of `stdio` and the caller may close its own. With `caller_reaps` the
        caller reaps every child the create forks (its loop reaps all children, as a
        subreaper does): the create then never waits for one. Closing the generator
        before it is done undoes the create, as a failure does."""
        st.validate_id(container_id)
        bundle = os.path.abspath(bundle)
        config = load_bundle(bundle, require_process=False)
        rootfs = os.path.join(bundle, config["root"]["path"])
        rootfs = os.path.realpath(rootfs)
        if not os.path.isdir(rootfs):
            raise SpecError(f"config.json: root.path: {rootfs} is not a directory")
        if (config.get("process") or {}).get("terminal") and not console_socket:
            raise SpecError("config.json: process.terminal: a terminal needs --console-socket")
        namespaces = namespace_map(config)
        directory = self.store.reserve(container_id)
        undo: list[Callable[[], None]] = [lambda: _remove_tree(directory)]
        try:
            created = yield from self._create(
                container_id, bundle, config, rootfs, namespaces, directory, undo,
                pid_file=pid_file, console_socket=console_socket,
                preserve_fds=preserve_fds, monitor=monitor, stdio=stdio,
                caller_reaps=caller_reaps,
            )  # fmt: skip
        except BaseException:  # GeneratorExit too: an abandoned create is undone
            for action in reversed(undo):
                try:
                    action()
                except Exception as e:  # keep undoing; report the original error
                    log.warning(f"clean up after failed create of {container_id}: {e}")
            raise
        return created

    def _create(
        self,
        container_id: str,
        bundle: str,
        config: dict[str, Any],
        rootfs: str,
        namespaces: dict[str, str],
        directory: str,
        undo: list[Callable[[], None]],
        *,
        pid_file: str,
        console_socket: str,
        preserve_fds: int,
        monitor: bool,
        stdio: tuple[int, int, int] | None,
        caller_reaps: bool,
    ) -> CreateSteps:
        # Imported here: of all verbs only create needs the setup code (and ctypes).
        from runtime.channel import channel_pair
        from runtime.fork import fork_child
        from runtime.init import InitContext, run_intermediate

        cgroup = _open_cgroup(container_id, config)
        undo.append(cgroup.remove)
        # Made before fork: init joins it as its first step.
        self._make_cgroup(cgroup, config)
        fifo_path = os.path.join(directory, "exec.fifo")
        os.mkfifo(fifo_path, 0o600)
        # O_RDWR never blocks on a fifo; init later blocks reading it until `start`
        # writes. Opened here because the path is unreachable after pivot_root.
        fifo_fd = os.open(fifo_path, os.O_RDWR | os.O_CLOEXEC)
        exit_fd = os.open(
            os.path.join(directory, "exit"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        console_fd = -1
        if console_socket:
            from runtime.tty import connect_console_socket

            console_fd = connect_console_socket(console_socket)
        parent, child = channel_pair()
        ctx = InitContext(
            container_id=container_id, config=config, bundle=bundle, rootfs=rootfs,
            channel=child, syscalls=self.syscalls, namespaces=namespaces,
            fifo_fd=fifo_fd, exit_fd=exit_fd, console_fd=console_fd,
            preserve_fds=preserve_fds, monitor=monitor, cgroup_paths=cgroup.paths,
            stdio=stdio, cgroup=None if namespaces.get("user") == "" else cgroup,
        )  # fmt: skip
        if not monitor:
            self.syscalls.set_child_subreaper()
        _flush_stdio()

        def intermediate_process() -> None:
            parent.close()
            run_intermediate(ctx)

        intermediate = fork_child(intermediate_process)
        child.close()
        for fd in (fifo_fd, exit_fd, console_fd):
            if fd >= 0:
                os.close(fd)
        pids: list[int] = [intermediate]
        # A caller that reaps may already have reaped them when the undo runs: the
        # signal then finds no process (pids are not reused before the pid space
        # wraps around, far more forks away than one create takes).
        undo.append(lambda: _kill(pids) if caller_reaps else _kill_and_reap(pids))
        _record_creating(directory, _cgroup_path(container_id, config), pids)
        try:
            init_pid = yield from self._drive_setup(
                container_id, bundle, config, parent, cgroup, pids, directory
            )
        finally:
            parent.close()
        record = {
            "id": container_id,
            "pid": init_pid,
            "init_start_time": st.process_start_time(init_pid),
            "monitor_pid": intermediate if monitor else 0,
            "bundle": bundle,
            "rootfs": rootfs,
            "created": st.rfc3339_now(),
            "cgroup_path": _cgroup_path(container_id, config),
            "config": config,
        }
        self.store.save(directory, record)
        if pid_file:
            st.atomic_write(os.path.abspath(pid_file), f"{init_pid}".encode())
        if not monitor and not caller_reaps:
            # The intermediate exits once init is forked; init is now our child.
            _reap(intermediate)
        return st.ContainerState(directory, record)

    @staticmethod
    def _make_cgroup(cgroup: Any, config: dict[str, Any]) -> None:
        cgroup.create()
        for warning in cgroup.apply(cgroup_resources(config)):
            log.warning(warning)

    def _drive_setup(
        self,
        container_id: str,
        bundle: str,
        config: dict[str, Any],
        channel: Channel,
        cgroup: Any,
        pids: list[int],
        directory: str,
    ) -> Generator[WaitReadable, None, int]:
        """The parent's half of the setup protocol (see `runtime.channel`)."""
        from runtime.init import has_runtime_hooks

        linux = config["linux"]
        if namespace_map(config).get("user") == "":
            message = yield from _expect(channel, "userns_ready")
            write_id_maps(message["pid"], linux["uidMappings"], linux["gidMappings"])
            channel.send("mapped")
        init_pid = (yield from _expect(channel, "init_pid"))["pid"]
        pids.insert(0, init_pid)
        _record_creating(directory, _cgroup_path(container_id, config), pids)
        if namespace_map(config).get("user") == "":
            # In a new user namespace init cannot write the host's cgroupfs: we
            # attach it (see runtime.init.attach_cgroup for the usual path).
            try:
                cgroup.add_process(init_pid)
            except Exception:
                # Most likely init already failed: its own report says why.
                channel.raise_reported_error()
                raise
            channel.send("go")
        hooks = config.get("hooks", {})
        if has_runtime_hooks(config):
            from runtime.hooks import run_hooks

            yield from _expect(channel, "run_hooks")

            hook_state = {
                "ociVersion": st.OCI_VERSION, "id": container_id, "status": st.CREATED,
                "pid": init_pid, "bundle": bundle,
                "annotations": config.get("annotations", {}),
            }  # fmt: skip
            run_hooks(hooks, "prestart", hook_state)
            run_hooks(hooks, "createRuntime", hook_state)
            channel.send("hooks_done")
        yield from _expect(channel, "ready")
        return int(init_pid)

    # -- other verbs --------------------------------------------------------------

    def load(self, container_id: str) -> st.ContainerState:
        return self.store.load(container_id)

    def status(self, container: st.ContainerState) -> str:
        if not container.init_alive():
            return st.STOPPED
        if os.path.exists(container.fifo_path):
            return st.CREATED
        return st.PAUSED if self._frozen(container) else st.RUNNING

    def _frozen(self, container: st.ContainerState) -> bool:
        try:
            return bool(_open_cgroup(container.id, container.config).is_frozen())
        except Exception:
            return False

    def state(self, container_id: str) -> dict[str, Any]:
        container = self.load(container_id)
        return container.oci_state(self.status(container))

    def start(self, container_id: str) -> None:
        container = self.load(container_id)
        status = self.status(container)
        if not st.can_start(status):
            raise InvalidState(f"cannot start container {container_id}: it is {status}")
        if not container.config.get("process"):
            # Runtime spec: start must fail when process is not set; the container
            # cannot run anything, so it is stopped.
            _signal(container.pid, signal.SIGKILL)
            raise InvalidState(f"cannot start container {container_id}: config.json has no process")
        try:
            fd = os.open(container.fifo_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise InvalidState(
                f"cannot start container {container_id}: its init is not waiting"
            ) from None
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(container.fifo_path)
        hooks = container.config.get("hooks", {})
        if hooks.get("poststart"):
            from runtime.hooks import HookError, run_hooks

            try:
                run_hooks(hooks, "poststart", container.oci_state(st.RUNNING))
            except HookError as e:
                log.warning(str(e))

    def kill(self, container_id: str, sig: int, *, all_processes: bool = False) -> None:
        container = self.load(container_id)
        status = self.status(container)
        if not st.can_kill(status):
            raise InvalidState(f"cannot kill container {container_id}: it is {status}")
        if all_processes:
            cgroup = _open_cgroup(container_id, container.config)
            for pid in cgroup.pids():
                _signal(pid, sig)
            if status == st.PAUSED and sig == signal.SIGKILL:
                cgroup.thaw()
        else:
            _signal(container.pid, sig)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        try:
            container = self.load(container_id)
        except InvalidState:
            if force:
                self._delete_half_created(container_id)
                return
            raise
        status = self.status(container)
        if not st.can_delete(status) and not force:
            raise InvalidState(
                f"cannot delete container {container_id}: it is {status} "
                "(stop it first or use --force)"
            )
        cgroup = _open_cgroup(container_id, container.config)
        # Without a pid namespace of its own, processes can outlive init in the
        # cgroup (a daemon the container started): they go too, as with runc.
        if status != st.STOPPED or _any_alive(cgroup):
            self._kill_everything(container, cgroup)
        hooks = container.config.get("hooks", {})
        if hooks.get("poststop"):
            from runtime.hooks import HookError, run_hooks

            try:
                run_hooks(hooks, "poststop", container.oci_state(st.STOPPED))
            except HookError as e:
                log.warning(str(e))
        cgroup.remove()
        _remove_tree(container.directory)

    def _delete_half_created(self, container_id: str) -> None:
        """A create that died half way (killed caller): kill the processes it had
        forked and remove its cgroup, as recorded in creating.json, then the rest."""
        directory = self.store.directory(container_id)
        try:
            with open(os.path.join(directory, "creating.json"), "rb") as f:
                record = json.loads(f.read())
        except (OSError, ValueError):
            record = {}
        for pid, start_time in record.get("pids", []):
            if st.process_start_time(pid) == start_time:
                _signal(pid, signal.SIGKILL)
        if record.get("cgroup_path"):
            from runtime.cgroups import open_manager

            cgroup = open_manager(record["cgroup_path"])
            deadline = time.monotonic() + 5
            while _any_alive(cgroup) and time.monotonic() < deadline:
                time.sleep(0.01)
            cgroup.remove()
        _remove_tree(directory)

    def _kill_everything(self, container: st.ContainerState, cgroup: Any) -> None:
        """SIGKILL init (with its pid namespace, everything in it dies too) and any
        process left in the cgroup, then wait until they are gone."""
        if container.init_alive():  # a dead init's pid may belong to someone else now
            _signal(container.pid, signal.SIGKILL)
        try:
            pids = cgroup.pids()
            for pid in pids:
                _signal(pid, signal.SIGKILL)
            if cgroup.is_frozen():
                cgroup.thaw()
        except Exception as e:
            log.warning(f"kill processes of {container.id}: {e}")
        deadline = time.monotonic() + 10
        delay = 0.0005
        while container.init_alive() or _any_alive(cgroup):
            if time.monotonic() > deadline:
                log.warning(f"processes of {container.id} still alive after SIGKILL")
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def pause(self, container_id: str) -> None:
        container = self.load(container_id)
        status = self.status(container)
        if not st.can_pause(status):
            raise InvalidState(f"cannot pause container {container_id}: it is {status}")
        _open_cgroup(container_id, container.config).freeze()

    def resume(self, container_id: str) -> None:
        container = self.load(container_id)
        status = self.status(container)
        if not st.can_resume(status):
            raise InvalidState(f"cannot resume container {container_id}: it is {status}")
        _open_cgroup(container_id, container.config).thaw()

    def update(self, container_id: str, resources: dict[str, Any]) -> list[str]:
        container = self.load(container_id)
        status = self.status(container)
        if status == st.STOPPED:
            raise InvalidState(f"cannot update container {container_id}: it is stopped")
        warnings: list[str] = _open_cgroup(container_id, container.config).apply(resources)
        return warnings

    def pids(self, container_id: str) -> list[int]:
        container = self.load(container_id)
        pids: list[int] = _open_cgroup(container_id, container.config).pids()
        return sorted(pids)

    def list(self) -> list[dict[str, Any]]:
        result = []
        for container_id in self.store.ids():
            try:
                container = self.load(container_id)
            except (NotFound, InvalidState):
                continue
            result.append(container.oci_state(self.status(container)))
        return result

    # -- foreground run -----------------------------------------------------------

    def wait_init(self, container: st.ContainerState, *, forward_signals: bool = True) -> int:
        """Wait for init (our child after a monitor-less create); record and return
        its exit code, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/2 to it."""
        pid = container.pid
        forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)  # fmt: skip
        if forward_signals:
            for sig in forwarded:
                signal.signal(sig, lambda number, _frame: _signal(pid, number))
        status = 0
        while True:
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if reaped == pid:
                break
        return self.record_exit(container, status)

    def record_exit(self, container: st.ContainerState, status: int) -> int:
        """Record how init ended (a waitpid status) for `state`, when the caller
        reaped it itself: a foreground `run`, or a supervisor that is the child
        subreaper of containers made with monitor=False. Returns the exit code."""
        from runtime.init import write_exit_status

        exit_fd = os.open(os.path.join(container.directory, "exit"),
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)  # fmt: skip
        write_exit_status(exit_fd, status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)

    # -- exec ---------------------------------------------------------------------

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        detach: bool = False,
        pid_file: str = "",
        console_socket: str = "",
        preserve_fds: int = 0,
    ) -> int:
        """Run another process in the container's namespaces and cgroup. Returns its
        exit code, or 0 once it started when detached."""
        from runtime.exec import exec_process

        container = self.load(container_id)
        status = self.status(container)
        if not st.can_exec(status):
            raise InvalidState(f"cannot exec in container {container_id}: it is {status}")
        try:
            validate_process(process, "process")
        except SpecError as e:
            raise SpecError(str(e).replace("config.json: ", "")) from None
        cgroup = _open_cgroup(container_id, container.config)
        return exec_process(
            self.syscalls, container, process, cgroup,
            detach=detach, pid_file=pid_file, console_socket=console_socket,
            preserve_fds=preserve_fds,
        )  # fmt: skip


def write_id_maps(
    pid: int, uid_mappings: list[dict[str, int]], gid_mappings: list[dict[str, int]]
) -> None:
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
        path = f"/proc/{pid}/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise SpecError(f"config.json: linux.{name[:3]}Mappings: write {path}: "
                            f"{e.strerror}") from None  # fmt: skip


def _record_creating(directory: str, cgroup_path: str, pids: list[int]) -> None:
    """What a half-done create has made, so `delete --force` can undo it if the
    caller dies before state.json exists (no fsync: it matters only while the
    machine stays up)."""
    record = {
        "cgroup_path": cgroup_path,
        "pids": [[pid, st.process_start_time(pid)] for pid in pids],
    }
    tmp = os.path.join(directory, ".creating.json.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(record))
    os.rename(tmp, os.path.join(directory, "creating.json"))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _any_alive(cgroup: Any) -> bool:
    try:
        return any(st.process_start_time(pid) is not None for pid in cgroup.pids())
    except Exception:
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _kill_and_reap(pids: list[int]) -> None:
    _kill(pids)
    for pid in pids:
        _reap(pid)


def _expect(channel: Channel, kind: str) -> Generator[WaitReadable, None, dict[str, Any]]:
    """The next message of `kind` from init, yielding while none has arrived."""
    while True:
        message = channel.take(kind, on_warning=log.warning)
        if message is not None:
            return message
        yield WaitReadable(channel.read_fd)
        if not channel.read_more():
            raise ContainerInitError(f"container init exited while waiting for {kind}")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _remove_tree(path: str) -> None:
    """Remove a state directory (flat: files only)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _flush_stdio() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def load_resources(text: str, source: str) -> dict[str, Any]:
    try:
        resources = json.loads(text)
    except ValueError as e:
        raise SpecError(f"{source}: invalid JSON: {e}") from None
    if not isinstance(resources, dict):
        raise SpecError(f"{source}: must be a JSON object (linux.resources)")
    return resources
