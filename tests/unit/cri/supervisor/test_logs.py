"""CRI log records: line framing (full, partial, 16 KiB cuts, UTF-8), timestamps and
the log file (mode, reopen after rotation, failing writes)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from cri.supervisor.logs import (
    FULL,
    MAX_RECORD_BYTES,
    PARTIAL,
    STDERR,
    STDOUT,
    LineFramer,
    LogFile,
    Timestamps,
    format_records,
    parse_record,
    utf8_cut,
)

RFC3339_NANO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def frame(*chunks: bytes, max_bytes: int = MAX_RECORD_BYTES) -> list[tuple[bytes, bytes]]:
    framer = LineFramer(max_bytes)
    records = []
    for chunk in chunks:
        records += framer.feed(chunk)
    return records + framer.flush()


def test_full_lines_one_record_each():
    assert frame(b"one\ntwo\n") == [(FULL, b"one"), (FULL, b"two")]


def test_a_line_split_across_reads_is_one_record():
    assert frame(b"hel", b"lo wo", b"rld\nnext", b"\n") == [
        (FULL, b"hello world"),
        (FULL, b"next"),
    ]


def test_empty_lines_are_empty_full_records():
    assert frame(b"\n\na\n") == [(FULL, b""), (FULL, b""), (FULL, b"a")]


def test_output_ending_without_newline_is_a_partial_record():
    assert frame(b"done\nno newline") == [(FULL, b"done"), (PARTIAL, b"no newline")]


def test_unfinished_line_waits_for_its_newline():
    framer = LineFramer()
    assert framer.feed(b"waiting") == []
    assert framer.pending == len(b"waiting")
    assert framer.feed(b" still\n") == [(FULL, b"waiting still")]
    assert framer.flush() == []


def test_carriage_return_is_kept():
    assert frame(b"dos line\r\n") == [(FULL, b"dos line\r")]


def test_line_of_exactly_max_bytes_is_one_full_record():
    line = b"x" * MAX_RECORD_BYTES
    assert frame(line + b"\n") == [(FULL, line)]


def test_line_one_byte_over_max_is_partial_then_full():
    line = b"x" * MAX_RECORD_BYTES + b"y"
    assert frame(line + b"\n") == [(PARTIAL, b"x" * MAX_RECORD_BYTES), (FULL, b"y")]


def test_long_line_is_cut_into_16k_partials_and_a_full():
    line = bytes(range(32, 127)) * 500  # 47500 bytes, no newline inside
    records = frame(line[:10000], line[10000:] + b"\nafter\n")
    assert [tag for tag, _ in records] == [PARTIAL, PARTIAL, FULL, FULL]
    assert [len(content) for _, content in records[:3]] == [16384, 16384, 47500 - 32768]
    assert b"".join(content for _, content in records[:3]) == line
    assert records[3] == (FULL, b"after")


def test_partial_is_emitted_only_once_more_than_max_bytes_wait():
    framer = LineFramer(8)
    assert framer.feed(b"12345678") == []  # could still end with a newline: wait
    assert framer.feed(b"9") == [(PARTIAL, b"12345678")]
    assert framer.feed(b"\n") == [(FULL, b"9")]


def test_cut_never_splits_a_utf8_sequence():
    # 16383 ASCII bytes then two 2-byte characters: the cut at 16384 would split the
    # first é, so the partial record ends before it.
    line = b"a" * (MAX_RECORD_BYTES - 1) + "éé".encode()
    records = frame(line + b"\n")
    assert records == [(PARTIAL, b"a" * (MAX_RECORD_BYTES - 1)), (FULL, "éé".encode())]


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])  # 2, 3 and 4 bytes
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_every_record_is_valid_utf8_when_the_output_is(char: str, offset: int):
    text = "a" * offset + char * 20
    records = frame(text.encode() + b"\n", max_bytes=9)
    for _, content in records:
        content.decode("utf-8")  # raises if a sequence was split
    assert "".join(content.decode() for _, content in records) == text
    assert [tag for tag, _ in records][-1] == FULL
    assert all(len(content) <= 9 for _, content in records)


def test_invalid_utf8_is_copied_as_is():
    data = b"\xff\xfe" + b"\x80" * 20
    records = frame(data + b"\n", max_bytes=8)
    assert b"".join(content for _, content in records) == data


def test_utf8_cut_moves_back_to_the_lead_byte_only():
    data = b"ab" + "€".encode()  # € = e2 82 ac
    assert utf8_cut(data, 0, 3) == 2
    assert utf8_cut(data, 0, 4) == 2
    assert utf8_cut(data, 0, 5) == 5
    assert utf8_cut(data, 0, 2) == 2
    # never back to the start of the record: that would make no progress
    assert utf8_cut("€".encode(), 0, 2) == 2


def test_framer_needs_room_for_a_utf8_sequence():
    with pytest.raises(ValueError):
        LineFramer(3)


def test_timestamps_are_rfc3339_utc_with_nanoseconds():
    timestamps = Timestamps()
    assert timestamps.format(0) == b"1970-01-01T00:00:00.000000000Z"
    assert timestamps.format(1_700_000_000_123_456_789) == b"2023-11-14T22:13:20.123456789Z"
    assert timestamps.format(1_700_000_000_000_000_001) == b"2023-11-14T22:13:20.000000001Z"
    assert timestamps.format(1_700_000_001_5 * 10**8) == b"2023-11-14T22:13:21.500000000Z"


def test_format_and_parse_records():
    data = format_records(
        b"2023-11-14T22:13:20.000000001Z", STDERR, [(FULL, b"a b"), (PARTIAL, b"")]
    )
    assert data == (
        b"2023-11-14T22:13:20.000000001Z stderr F a b\n2023-11-14T22:13:20.000000001Z stderr P \n"
    )
    first, second = data.splitlines(keepends=True)
    assert parse_record(first) == (b"2023-11-14T22:13:20.000000001Z", STDERR, FULL, b"a b")
    assert parse_record(second)[2:] == (PARTIAL, b"")


@pytest.mark.parametrize("line", [b"", b"ts stdout F", b"ts stdin F x", b"ts stdout X x"])
def test_parse_record_rejects_other_lines(line: bytes):
    with pytest.raises(ValueError):
        parse_record(line)


def test_log_file_records_both_streams(tmp_path: Path):
    path = tmp_path / "pods" / "uid" / "c" / "0.log"  # directories made on demand
    log_file = LogFile(str(path), clock=lambda: 1_700_000_000_000_000_000)
    try:
        log_file.write(STDOUT, [(FULL, b"out")])
        log_file.write(STDERR, [(PARTIAL, "ünï".encode())])
        log_file.write(STDOUT, [])
    finally:
        log_file.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
    lines = path.read_bytes().splitlines()
    assert [parse_record(line)[1:] for line in lines] == [
        (STDOUT, FULL, b"out"),
        (STDERR, PARTIAL, "ünï".encode()),
    ]
    assert all(RFC3339_NANO.match(parse_record(line)[0]) for line in lines)


def test_log_file_appends_and_reopens_after_rotation(tmp_path: Path):
    path = tmp_path / "0.log"
    path.write_bytes(b"existing\n")
    log_file = LogFile(str(path))
    try:
        log_file.write(STDOUT, [(FULL, b"before")])
        path.rename(tmp_path / "0.log.1")
        log_file.write(STDOUT, [(FULL, b"still old")])  # the open file is the renamed one
        log_file.reopen()
        log_file.write(STDOUT, [(FULL, b"after")])
    finally:
        log_file.close()
    rotated = (tmp_path / "0.log.1").read_bytes().splitlines()
    assert rotated[0] == b"existing"
    assert [parse_record(line)[3] for line in rotated[1:]] == [b"before", b"still old"]
    assert [parse_record(line)[3] for line in path.read_bytes().splitlines()] == [b"after"]


def test_log_file_without_path_discards(tmp_path: Path):
    log_file = LogFile("")
    log_file.write(STDOUT, [(FULL, b"nowhere")])
    log_file.reopen()
    log_file.close()
    assert list(tmp_path.iterdir()) == []


def test_failing_writes_drop_output_and_warn_once(caplog: pytest.LogCaptureFixture):
    log_file = LogFile("/dev/full")
    try:
        for _ in range(3):
            log_file.write(STDOUT, [(FULL, b"lost")])
    finally:
        log_file.close()
    warnings = [r for r in caplog.records if "write container log /dev/full" in r.getMessage()]
    assert len(warnings) == 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
