"""cgroup v1 controllers: one module per controller, each with functions that
take the controller's cgroup directory (`<mount>/<cgroupsPath>`) as a parameter.

`apply(cgroup_dir, section)` functions take the OCI `linux.resources` section,
change only the keys present and return warnings for settings that cannot be
honoured. Routing a section to v1 or v2 is the manager's job.
"""
