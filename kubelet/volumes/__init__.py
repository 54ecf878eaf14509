"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI and
projected; the containers' mounts and the managed /etc/hosts (see manager.py)."""

from kubelet.volumes.errors import VolumeError
from kubelet.volumes.manager import VolumeManager

__all__ = ["VolumeError", "VolumeManager"]
