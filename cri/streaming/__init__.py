"""Streaming for the CRI's Exec, Attach and PortForward: an HTTP server speaking
Kubernetes' remote-command and port-forward protocols over SPDY/3.1 and WebSocket.

    server.py         the HTTP endpoint, one-time tokens, protocol negotiation
    spdy.py           SPDY/3.1 framing and sessions
    websocket.py      RFC 6455 framing
    transport.py      the byte stream under both, exact reads, inbound buffers
    channels.py       stdin/stdout/stderr/error/resize over either transport
    remotecommand.py  exec and attach: channels to a process's pipes or terminal
    portforward.py    port-forward streams to sockets in the pod's network namespace

This package knows nothing of containers: the RPCs (cri.runtime_service.streaming)
register runners and connect functions that do the container side.
"""
