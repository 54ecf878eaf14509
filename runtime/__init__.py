"""kubeling's OCI runtime: turns a bundle (config.json + rootfs) into a running,
isolated process, using Linux primitives directly (namespaces, mounts, pivot_root,
cgroups, capabilities, seccomp).

Library first (`runtime.container`), with a runc-compatible CLI on top
(`runtime.cli`, installed as `kubeling-runtime` and `kubeling runtime`).

Import budget: the CLI is a short-lived process started for every container
operation, and on the target machines importing `re`, `typing`, `dataclasses`,
`pathlib`, `logging` or `argparse` each costs several milliseconds (the whole
`run /bin/true` budget is about 15 ms). Modules on the create/start/run/exec/
kill/delete path therefore import only `os`, `sys`, `json`, `ctypes`, `errno`,
`signal`, `socket`, `struct` and `time`, keep typing-only imports under
`TYPE_CHECKING`, and use plain `__slots__` classes instead of dataclasses.
"""
