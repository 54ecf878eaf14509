"""The CRI ImageService over kubeling's image store (images.store.ImageStore).

What the CRI expects, beyond the obvious:
- an image is identified by its config digest; `repo_tags` are the names it was
  pulled or tagged as, `repo_digests` `<repository>@<manifest digest>`;
- ImageStatus of an unknown image answers an empty `image`, not NOT_FOUND;
- RemoveImage removes the whole image (every tag) and succeeds for an unknown one;
- the image's USER becomes `uid` when numeric, else `username`.
"""

from __future__ import annotations

import json
import os
import threading
import time

import grpc

from cri.api import api_pb2, api_pb2_grpc
from cri.errors import InvalidArgument, rpc
from images.errors import NotFound
from images.metadata import Image
from images.registries import Credentials
from images.store import ImageStore


def image_message(image: Image) -> api_pb2.Image:
    message = api_pb2.Image(
        id=image.id,
        repo_tags=list(image.repo_tags),
        repo_digests=list(image.repo_digests),
        size=image.size,
        spec=api_pb2.ImageSpec(image=image.id),
    )
    user = image.config.user.split(":", 1)[0]
    if user.isdigit():
        message.uid.CopyFrom(api_pb2.Int64Value(value=int(user)))
    elif user:
        message.username = user
    return message


def credentials(auth: api_pb2.AuthConfig) -> Credentials | None:
    """CRI AuthConfig -> store credentials (username/password, the docker-style
    base64 `auth`, or an identity token)."""
    username, password = auth.username, auth.password
    if auth.auth and not username:
        import base64

        try:
            username, _, password = base64.b64decode(auth.auth).decode().partition(":")
        except ValueError:
            raise InvalidArgument("auth.auth: not base64 of user:password") from None
    if auth.identity_token:
        return Credentials(username=username, identity_token=auth.identity_token)
    if username or password:
        return Credentials(username=username, password=password)
    return None


# ImageFsInfo's figures are a walk of the whole image store (the images' files and
# every container's writable layer); like containerd, which collects snapshot usage
# periodically (every 10 s), they are reused for a while: the kubelet asks every
# 10 s. A pull or an image removal through this service measures again at once.
FS_USAGE_SECONDS = 30.0


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._usage_lock = threading.Lock()
        self._usage: tuple[float, api_pb2.FilesystemUsage] | None = None  # (monotonic, usage)

    def _fs_usage(self) -> api_pb2.FilesystemUsage:
        with self._usage_lock:
            cached = self._usage
            if cached is not None and time.monotonic() - cached[0] < FS_USAGE_SECONDS:
                return cached[1]
            measured = time.monotonic()
            usage = filesystem_usage(str(self.store.root))
            self._usage = (measured, usage)
            return usage

    def _usage_changed(self) -> None:
        with self._usage_lock:
            self._usage = None

    def _find(self, ref: str) -> Image | None:
        try:
            return self.store.get(ref)
        except NotFound:
            return None

    @rpc
    def ListImages(
        self, request: api_pb2.ListImagesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListImagesResponse:
        wanted = request.filter.image.image if request.HasField("filter") else ""
        if wanted:
            found = self._find(wanted)
            images = [found] if found is not None else []
        else:
            images = self.store.list()
        return api_pb2.ListImagesResponse(images=[image_message(i) for i in images])

    @rpc
    def ImageStatus(
        self, request: api_pb2.ImageStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.ImageStatusResponse:
        if not request.image.image:
            raise InvalidArgument("image.image: an image reference or id is required")
        image = self._find(request.image.image)
        if image is None:
            return api_pb2.ImageStatusResponse()
        response = api_pb2.ImageStatusResponse(image=image_message(image))
        if request.verbose:
            response.info["info"] = json.dumps(image.to_json())
        return response

    @rpc
    def PullImage(
        self, request: api_pb2.PullImageRequest, context: grpc.ServicerContext
    ) -> api_pb2.PullImageResponse:
        if not request.image.image:
            raise InvalidArgument("image.image: an image reference is required")
        image = self.store.pull(request.image.image, credentials=credentials(request.auth))
        self._usage_changed()
        return api_pb2.PullImageResponse(image_ref=image.id)

    @rpc
    def RemoveImage(
        self, request: api_pb2.RemoveImageRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemoveImageResponse:
        if not request.image.image:
            raise InvalidArgument("image.image: an image reference or id is required")
        image = self._find(request.image.image)
        if image is not None:
            try:
                self.store.remove(image.id)
            except NotFound:
                pass  # removed meanwhile by a concurrent call: the same outcome
            self._usage_changed()
        return api_pb2.RemoveImageResponse()

    @rpc
    def ImageFsInfo(
        self, request: api_pb2.ImageFsInfoRequest, context: grpc.ServicerContext
    ) -> api_pb2.ImageFsInfoResponse:
        usage = self._fs_usage()
        return api_pb2.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])


def filesystem_usage(path: str) -> api_pb2.FilesystemUsage:
    """Bytes and inodes used under `path` (the image store's own data)."""
    used_bytes = 0
    inodes = 0
    seen: set[tuple[int, int]] = set()
    device = os.stat(path).st_dev
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if st.st_dev != device or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            inodes += 1
            used_bytes += st.st_blocks * 512
    return api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=path),
        used_bytes=api_pb2.UInt64Value(value=used_bytes),
        inodes_used=api_pb2.UInt64Value(value=inodes),
    )
