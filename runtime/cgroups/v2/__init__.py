"""cgroup v2 controllers: one module per controller, each with functions that
take the cgroup's directory in the unified hierarchy as a parameter.

`apply(cgroup_dir, section)` functions take the OCI `linux.resources` section,
change only the keys present and return warnings for settings that cannot be
honoured. `subtree.py` creates directories and enables controllers in the
ancestors; `unified.py` writes `linux.resources.unified`.
"""
