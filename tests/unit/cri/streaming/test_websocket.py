"""WebSocket framing (RFC 6455) between a server and a client over a socketpair."""

from __future__ import annotations

import socket
import struct

from cri.streaming import websocket
from cri.streaming.channels import TerminalSize, parse_sizes
from cri.streaming.transport import InboundBuffer
from cri.streaming.websocket import WebSocket


def pair() -> tuple[WebSocket, WebSocket, socket.socket, socket.socket]:
    a, b = socket.socketpair()
    server = WebSocket(a.recv, a.sendall, a.close)
    client = WebSocket(b.recv, b.sendall, b.close, client=True)
    return server, client, a, b


def test_accept_key_of_the_rfc_example() -> None:
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_choose_protocol_takes_the_clients_first_supported() -> None:
    supported = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    assert websocket.choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io", supported) == (
        "v4.channel.k8s.io"
    )
    assert websocket.choose_protocol("base64.channel.k8s.io", supported) is None


def test_messages_both_ways_masked_one_way() -> None:
    server, client, a, b = pair()
    for size in (0, 5, 200, 70000):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        client.send_binary(payload)
        assert server.receive() == (websocket.BINARY, payload)
        server.send_binary(payload)
        assert client.receive() == (websocket.BINARY, payload)
    # What the server sends is not masked: the second byte's high bit is clear.
    server.send_binary(b"abc")
    raw = b.recv(100)
    assert raw[1] & 0x80 == 0 and raw[2:] == b"abc"
    a.close()
    b.close()


def test_fragments_ping_and_close() -> None:
    server, client, a, b = pair()
    b.sendall(websocket.encode_frame(websocket.TEXT, b"hel", masked=True, fin=False))
    b.sendall(websocket.encode_frame(websocket.PING, b"p", masked=True))
    b.sendall(websocket.encode_frame(websocket.CONTINUATION, b"lo", masked=True))
    assert server.receive() == (websocket.TEXT, b"hello")
    # The ping was answered with a pong carrying its payload.
    client_frame = b.recv(100)
    assert client_frame[0] & 0x0F == websocket.PONG and client_frame[2:] == b"p"
    client.send_close()
    assert server.receive() is None
    assert server.close_sent
    code = struct.unpack(">H", b.recv(100)[2:4])[0]
    assert code == websocket.NORMAL_CLOSURE
    a.close()
    b.close()


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    server, _, a, b = pair()
    b.sendall(websocket.encode_frame(websocket.BINARY, b"x", masked=False))
    assert server.receive() is None
    assert struct.unpack(">H", b.recv(100)[2:4])[0] == websocket.PROTOCOL_ERROR
    a.close()
    b.close()


def test_terminal_sizes_split_across_reads() -> None:
    pending = bytearray()
    assert parse_sizes(b'{"Width":80,"Height":24}{"Wid', pending) == [TerminalSize(80, 24)]
    assert parse_sizes(b'th":100,"Height":50}\n', pending) == [TerminalSize(100, 50)]
    assert pending == b""
    assert parse_sizes(b'{"Width":"x"}', pending) == []


def test_inbound_buffer_reads_until_closed() -> None:
    buffer = InboundBuffer()
    buffer.feed(b"ab")
    buffer.close()
    buffer.feed(b"ignored")
    assert buffer.read() == b"ab"
    assert buffer.read() == b""
