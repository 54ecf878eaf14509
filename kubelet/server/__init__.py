"""The kubelet's node HTTP API (HTTPS on --address:--port).

node_server.py  NodeServer: TLS, authentication, routes
tls.py          the self-signed serving certificate and the SSL context
logs.py         /containerLogs: CRI log files read with the kubelet's options
lookup.py       pods, containers and sandboxes a path names; the kubelet's error texts
proxy.py        /exec, /attach, /portForward: the upgraded connection piped to the
                runtime's streaming server
"""

from kubelet.server.node_server import NodeServer

__all__ = ["NodeServer"]
