"""SPDY/3.1 framing and sessions: a server and a client session over a socketpair."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from cri.streaming import spdy
from cri.streaming.spdy import Session, Stream


@pytest.fixture
def pair() -> Iterator[tuple[Session, Session, list[Stream]]]:
    server_sock, client_sock = socket.socketpair()
    accepted: list[Stream] = []
    server = Session(server_sock, server=True, on_stream=accepted.append)
    client = Session(client_sock, server=False)
    threads = [threading.Thread(target=s.serve, daemon=True) for s in (server, client)]
    for thread in threads:
        thread.start()
    yield server, client, accepted
    client.close()
    server.close()
    for thread in threads:
        thread.join(5)


def accepted_streams(accepted: list[Stream], count: int) -> list[Stream]:
    """The server hands a stream over right after replying to it: wait for it."""
    deadline = time.monotonic() + 5
    while len(accepted) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(accepted) >= count
    return accepted


def test_dictionary_is_the_spdy3_one() -> None:
    # Its Adler-32 is the dictionary id a SPDY/3 peer's zlib stream names.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_header_block_round_trip() -> None:
    block = spdy.encode_headers({"StreamType": "stdout", "Port": "80"})
    assert spdy.decode_headers(block) == {"streamtype": "stdout", "port": "80"}
    with pytest.raises(spdy.SpdyError):
        spdy.decode_headers(block[:-3] + b"\xff\xff\xff")


def test_streams_carry_data_both_ways_and_half_close(
    pair: tuple[Session, Session, list[Stream]],
) -> None:
    _, client, accepted = pair
    # Several streams: the header compression context spans the session.
    first = client.open_stream({"streamType": "error"})
    second = client.open_stream({"streamType": "stdin", "X-Extra": "1"})
    assert [s.headers for s in accepted_streams(accepted, 2)] == [
        {"streamtype": "error"},
        {"streamtype": "stdin", "x-extra": "1"},
    ]
    assert (first.id, second.id) == (1, 3)
    served = accepted[1]
    second.write(b"hello " * 20000)  # more than one DATA frame
    second.close()
    assert served.read_all() == b"hello " * 20000
    served.write(b"back")
    served.close()
    assert second.read_all() == b"back"
    assert served.remote_closed


def test_reset_ends_the_reader(pair: tuple[Session, Session, list[Stream]]) -> None:
    _, client, accepted = pair
    stream = client.open_stream({"streamType": "data"})
    stream.reset()
    assert accepted_streams(accepted, 1)[0].read() == b""
    assert accepted[0].reset_by_peer


def test_ping_is_echoed(pair: tuple[Session, Session, list[Stream]]) -> None:
    server, client, _ = pair
    # No exception and the session stays usable: the echo is read and ignored.
    client.ping(1)
    stream = client.open_stream({"streamType": "x"})
    assert stream.id == 1
    assert not server.closed.is_set()


def test_refused_without_handler() -> None:
    server_sock, client_sock = socket.socketpair()
    server = Session(server_sock, server=True)
    client = Session(client_sock, server=False)
    for session in (server, client):
        threading.Thread(target=session.serve, daemon=True).start()
    try:
        stream = client.open_stream({"streamType": "x"})
    except spdy.SpdyError as e:  # the reset came before we looked
        assert "refused" in str(e)
    else:
        assert stream.read() == b""
        assert stream.reset_by_peer
    client.close()


def test_peer_closing_ends_every_stream(pair: tuple[Session, Session, list[Stream]]) -> None:
    server, client, accepted = pair
    client.open_stream({"streamType": "stdout"})
    served = accepted_streams(accepted, 1)[0]
    client.close()
    assert served.read() == b""
    assert server.closed.wait(5)


def test_garbage_ends_the_session() -> None:
    server_sock, client_sock = socket.socketpair()
    server = Session(server_sock, server=True, on_stream=lambda s: None)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    # A control frame of SPDY version 2.
    client_sock.sendall(struct.pack(">HHI", 0x8002, spdy.SYN_STREAM, 10) + b"\0" * 10)
    thread.join(5)
    assert server.closed.is_set()
    assert client_sock.recv(100) == b""
    client_sock.close()
