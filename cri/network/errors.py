"""Domain errors of the pod network.

Every error cri/network raises on purpose is a NetworkError, so the CRI servicers
catch one base class and translate it in cri/errors.py. Messages are lower-case,
without a trailing period, and name the operation and the object, for example
``setup network of sandbox 3f2a: add veth veth1a2b3c4d5e6: EEXIST``.
"""

from __future__ import annotations


class NetworkError(Exception):
    """Base class of every error cri/network raises on purpose."""


class ConfigError(NetworkError, ValueError):
    """A network configuration, sandbox id or port mapping that cannot be used."""


class AddressesExhausted(NetworkError):
    """Every address of the pod CIDR is allocated."""


class NetnsError(NetworkError):
    """Creating, entering or removing a network namespace failed."""


class IptablesError(NetworkError):
    """An iptables command failed; the message carries its arguments and stderr."""
