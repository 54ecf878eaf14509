"""The volume manager's one error: what the pod worker reports as an event and a
container waiting reason."""

from __future__ import annotations

FAILED_MOUNT = "FailedMount"
CONFIG_ERROR = "CreateContainerConfigError"


class VolumeError(Exception):
    """A volume cannot be set up (reason FailedMount, with the kubelet's message
    `MountVolume.SetUp failed for volume "x" : ...`) or a container's mounts cannot be
    made (reason CreateContainerConfigError)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def setup_failed(volume: str, detail: str) -> VolumeError:
    return VolumeError(FAILED_MOUNT, f'MountVolume.SetUp failed for volume "{volume}" : {detail}')
