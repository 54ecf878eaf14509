"""The container's process, from the request and the image: its args (ENTRYPOINT and
CMD against command and args), working directory and environment (containerd
``WithProcessArgs``, ``replaceOrAppendEnvValues``), and the image name the spec and
its errors use. Not the user (:mod:`.users`) nor capabilities (:mod:`.security`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cri.api import api_pb2
from cri.oci_spec.inputs import _fail
from images.metadata import Image

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _image_name(config: api_pb2.ContainerConfig, image: Image) -> str:
    """containerd: the user-specified image, else the image's first reference."""
    for name in (config.image.user_specified_image, *image.repo_tags, *image.repo_digests):
        if name:
            return name
    return config.image.image or image.id


def _container_args(config: api_pb2.ContainerConfig, image: Image, image_name: str) -> list[str]:
    """containerd ``WithProcessArgs`` (from moby): a command replaces the ENTRYPOINT and
    drops the CMD; args replace the CMD; an ENTRYPOINT of one empty string counts as
    none."""
    command, args = list(config.command), list(config.args)
    command_field, args_field = "config.command", "config.args"
    if not command:
        if not args:
            args, args_field = list(image.config.cmd), f"image {image_name}: config.Cmd"
        entrypoint = list(image.config.entrypoint)
        if entrypoint != [""]:
            command, command_field = entrypoint, f"image {image_name}: config.Entrypoint"
    if not command and not args:
        _fail("config.command", f"no command specified, and image {image_name} has none")
    first = f"{command_field}[0]" if command else f"{args_field}[0]"
    if not (command + args)[0]:
        _fail(first, "must not be empty")
    return command + args


def _working_dir(config: api_pb2.ContainerConfig, image: Image, image_name: str) -> str:
    if config.working_dir:
        if not config.working_dir.startswith("/"):
            _fail("config.working_dir", "must be absolute")
        return config.working_dir
    return _image_working_dir(image, image_name)


def _image_working_dir(image: Image, image_name: str) -> str:
    cwd = image.config.working_dir
    if not cwd:
        return "/"
    if not cwd.startswith("/"):
        _fail(f"image {image_name}: config.WorkingDir", f"{cwd!r} is not absolute")
    return cwd


def _image_env(image: Image, image_name: str) -> list[str]:
    for i, entry in enumerate(image.config.env):
        if entry.startswith("=") or "\0" in entry:
            _fail(f"image {image_name}: config.Env[{i}]", f"{entry!r} is not KEY=value")
    return list(image.config.env)


def _config_env(config: api_pb2.ContainerConfig) -> list[str]:
    out = []
    for i, kv in enumerate(config.envs):
        where = f"config.envs[{i}]"
        if not kv.key:
            _fail(f"{where}.key", "required")
        if "=" in kv.key or "\0" in kv.key:
            _fail(f"{where}.key", f"{kv.key!r} must not contain '=' or NUL")
        try:
            value = kv.value.decode()
        except UnicodeDecodeError:
            _fail(f"{where}.value", "is not valid UTF-8")
        if "\0" in value:
            _fail(f"{where}.value", "must not contain NUL")
        out.append(f"{kv.key}={value}")
    return out


def _merge_env(defaults: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """containerd ``replaceOrAppendEnvValues``: an override replaces the entry with its
    key in place, or is appended; ``KEY`` without ``=`` unsets a default. Unlike
    containerd, appended keys are indexed too, so a later override replaces them."""
    results: list[str | None] = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(defaults)}
    for value in overrides:
        key, eq, _ = value.partition("=")
        if not eq:
            if key in index:
                results[index.pop(key)] = None
            continue
        if key in index:
            results[index[key]] = value
        else:
            index[key] = len(results)
            results.append(value)
    return [e for e in results if e is not None]
