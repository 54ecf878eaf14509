"""CRI log files read with the kubelet's log options."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelet.server.logs import (
    LogOptions,
    LogOptionsError,
    format_timestamp,
    parse_options,
    parse_record,
    write_logs,
)
from kubelet.stats.times import parse_time_ns

LOG = (
    "2023-11-14T22:13:20.000000001Z stdout F one\n"
    "2023-11-14T22:13:21.5Z stderr F two\n"
    "2023-11-14T22:13:22.000000000Z stdout P thr\n"
    "2023-11-14T22:13:22.100000000Z stdout P e\n"
    "2023-11-14T22:13:22.200000000Z stdout F e\n"
    "not a record\n"
    "2023-11-14T22:13:23.000000000Z stdout F \n"
    "2023-11-14T22:13:24.000000000Z stdout F four\n"
)


def read(path: Path, **options: object) -> bytes:
    out = bytearray()
    write_logs(str(path), LogOptions(**options), out.extend)  # type: ignore[arg-type]
    return bytes(out)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "0.log"
    path.write_text(LOG)
    return path


def test_records() -> None:
    record = parse_record(b"2023-11-14T22:13:20.5Z stderr P:extra some text here")
    assert record.stream == "stderr" and record.partial
    assert record.text == b"some text here"
    assert record.timestamp_ns == 1_700_000_000_500_000_000
    assert parse_record(b"2023-11-14T22:13:20Z stdout F").text == b""
    for bad in (b"nonsense", b"2023-11-14T22:13:20Z stdin F x", b"2023-11-14T22:13:20Z stdout X x",
                b"yesterday stdout F x"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_record(bad)
    assert format_timestamp(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_partial_records_are_joined_and_junk_skipped(log_file: Path) -> None:
    assert read(log_file) == b"one\ntwo\nthree\n\nfour\n"


def test_tail(log_file: Path) -> None:
    assert read(log_file, tail_lines=2) == b"\nfour\n"
    # A joined line counts once; a line that is not a record counts (as the kubelet
    # counts the file's lines).
    assert read(log_file, tail_lines=4) == b"three\n\nfour\n"
    assert read(log_file, tail_lines=0) == b""
    assert read(log_file, tail_lines=100) == b"one\ntwo\nthree\n\nfour\n"


def test_since_and_timestamps(log_file: Path) -> None:
    since = parse_time_ns("2023-11-14T22:13:21.5Z")
    assert read(log_file, since_ns=since) == b"two\nthree\n\nfour\n"
    assert read(log_file, since_ns=since, tail_lines=1, timestamps=True) == (
        b"2023-11-14T22:13:24.000000000Z four\n"
    )
    stamped = read(log_file, timestamps=True).splitlines()
    assert stamped[2] == b"2023-11-14T22:13:22.000000000Z three"  # the first record's time


def test_limit_bytes(log_file: Path) -> None:
    assert read(log_file, limit_bytes=6) == b"one\ntw"


def test_an_unterminated_last_record_is_shown(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text("2023-11-14T22:13:20Z stdout F done\n2023-11-14T22:13:21Z stdout P half")
    assert read(path) == b"done\nhalf"


def test_follow_reads_until_the_container_ended_and_the_file_is_drained(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text("2023-11-14T22:13:20Z stdout F first\n")
    clock = [0.0]
    steps = [
        "2023-11-14T22:13:21Z stdout F sec",  # a writer mid-record: held back
        "ond\n2023-11-14T22:13:22Z stdout F third\n",
        "2023-11-14T22:13:23Z stdout F last\n",
    ]
    running = [True]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if steps:
            with path.open("a") as log:
                log.write(steps.pop(0))
        else:
            running[0] = False

    out = bytearray()
    write_logs(str(path), LogOptions(follow=True), out.extend, running=lambda: running[0],
               clock=lambda: clock[0], sleep=sleep)  # fmt: skip
    assert bytes(out) == b"first\nsecond\nthird\nlast\n"


def test_follow_of_a_replaced_file_starts_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text("2023-11-14T22:13:20Z stdout F old\n")
    done = [False]

    def sleep(_: float) -> None:
        if not done[0]:
            done[0] = True
            path.rename(tmp_path / "0.log.1")
            path.write_text("2023-11-14T22:13:21Z stdout F new\n")

    out = bytearray()
    running = iter([True, False, False])
    write_logs(str(path), LogOptions(follow=True), out.extend, running=lambda: next(running),
               clock=iter(range(100)).__next__, sleep=sleep)  # fmt: skip
    assert bytes(out) == b"old\nnew\n"


def test_follow_ends_when_the_client_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text("2023-11-14T22:13:20Z stdout F line\n")

    def gone(_: bytes) -> None:
        raise BrokenPipeError("client gone")

    with pytest.raises(BrokenPipeError):
        write_logs(str(path), LogOptions(follow=True), gone, running=lambda: True)


def test_options() -> None:
    options = parse_options(
        {"follow": ["true"], "tailLines": ["5"], "sinceSeconds": ["10"], "timestamps": ["1"],
         "limitBytes": ["100"], "previous": ["false"]},
        now=1000.0,
    )  # fmt: skip
    assert options == LogOptions(
        follow=True, previous=False, tail_lines=5, since_ns=990_000_000_000, timestamps=True,
        limit_bytes=100,
    )  # fmt: skip
    since = parse_options({"sinceTime": ["2023-11-14T22:13:20Z"]}, now=0)
    assert since.since_ns == 1_700_000_000_000_000_000
    cases = [
        ({"tailLines": ["-1"]}, "tailLines: Invalid value: -1"),
        ({"tailLines": ["x"]}, "tailLines: Invalid value: 'x'"),
        ({"limitBytes": ["0"]}, "limitBytes"),
        ({"sinceSeconds": ["0"]}, "sinceSeconds"),
        ({"sinceSeconds": ["1"], "sinceTime": ["2023-11-14T22:13:20Z"]}, "at most one"),
        ({"sinceTime": ["yesterday"]}, "sinceTime"),
        ({"follow": ["maybe"]}, "follow"),
    ]
    for query, message in cases:
        with pytest.raises(LogOptionsError, match=message):
            parse_options(query, now=0)
