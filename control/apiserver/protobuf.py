"""Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
decoded into the JSON object a JSON body would have given, so that defaulting,
validation and storage never know the difference. Go clients (kubectl's typed
commands: `create namespace`, `create deployment`, `drain`, ...) send it.

The body: the 4 bytes `k8s\\x00`, then a runtime.Unknown message

    1 typeMeta (runtime.TypeMeta: 1 apiVersion, 2 kind), 2 raw (the object's own
    message), 3 contentEncoding, 4 contentType

and `raw` is decoded with the schema of that apiVersion and kind (protobuf_schema.py).
The answer stays JSON: clients accept it (their Accept lists both).

Strict on purpose: a field number the schema does not know, a wire type that does not
match it, a truncated varint or a length that runs past the end is a 400 naming the
message type and field, never data silently dropped; a kind with no schema is a 415,
as any body in a format the server does not read.

What JSON gets, as Go's encoding/json would write the same Go object: bytes in
base64, Time as RFC 3339 in UTC to the second (MicroTime to the microsecond),
Quantity as its string, IntOrString as a number or a string, FieldsV1 as raw JSON.
A scalar field at its zero value is left out unless the schema marks it kept (`?`:
the Go field is a pointer or has no omitempty); a zero Time is `null`, as Go writes
the `creationTimestamp` of every pod template.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any

from control.apiserver import errors
from control.apiserver.errors import ApiError
from control.apiserver.protobuf_schema import (
    MESSAGES,
    ROOTS,
    VARINT_SCALARS,
    Field,
    Message,
)

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
# The media types a create or update body may have.
BODY_MEDIA_TYPES = ("application/json", MEDIA_TYPE)

# Wire types.
VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES = {
    VARINT: "varint", FIXED64: "64-bit", LENGTH_DELIMITED: "length-delimited",
    START_GROUP: "start-group", END_GROUP: "end-group", FIXED32: "32-bit",
}  # fmt: skip

# runtime.Unknown and runtime.TypeMeta (k8s.io/apimachinery/pkg/runtime).
_UNKNOWN_TYPE_META, _UNKNOWN_RAW, _UNKNOWN_CONTENT_ENCODING, _UNKNOWN_CONTENT_TYPE = 1, 2, 3, 4
_UNKNOWN_FIELDS = (
    _UNKNOWN_TYPE_META,
    _UNKNOWN_RAW,
    _UNKNOWN_CONTENT_ENCODING,
    _UNKNOWN_CONTENT_TYPE,
)
_TYPE_META_API_VERSION, _TYPE_META_KIND = 1, 2

# Go's zero time.Time (year 1) in Unix seconds: what an unset Time decodes to.
_GO_ZERO_TIME = -62135596800
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MAX_VARINT_BYTES = 10
_UINT64 = (1 << 64) - 1


class DecodeError(ValueError):
    """The body is not a valid encoding of its message (a 400). `path` is where, in JSON
    field names (`spec.containers[0].ports[1]`), once known."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message, self.path = message, path

    def __str__(self) -> str:
        return f"at {self.path}: {self.message}" if self.path else self.message


class UnsupportedKind(DecodeError):
    """The envelope names a kind this server has no schema for (a 415)."""


# -- the wire format ----------------------------------------------------------------


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The unsigned varint at `position` and the position after it."""
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        if position + index >= len(data):
            raise DecodeError(f"truncated varint at byte {position}")
        byte = data[position + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if value > _UINT64:
                raise DecodeError(f"varint at byte {position} overflows 64 bits")
            return value, position + index + 1
    raise DecodeError(f"varint at byte {position} is longer than {_MAX_VARINT_BYTES} bytes")


def wire_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of an encoded message: an int
    for varint, 64-bit and 32-bit fields (little-endian, unsigned), the bytes of a
    length-delimited one. Groups (deprecated, never in Kubernetes' messages) are errors."""
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError(f"field number 0 at byte {position}")
        value: int | bytes
        if wire_type == VARINT:
            value, position = read_varint(data, position)
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if position + size > len(data):
                raise DecodeError(f"field {number}: truncated {_WIRE_NAMES[wire_type]} value")
            value = int.from_bytes(data[position : position + size], "little")
            position += size
        elif wire_type == LENGTH_DELIMITED:
            length, position = read_varint(data, position)
            if position + length > len(data):
                raise DecodeError(
                    f"field {number}: length {length} runs past the end of the message "
                    f"({len(data) - position} bytes left)"
                )
            value = data[position : position + length]
            position += length
        else:
            raise DecodeError(f"field {number}: unsupported wire type {wire_type}")
        yield number, wire_type, value


# -- the envelope ---------------------------------------------------------------------


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object of a protobuf request body (envelope and object)."""
    if not body.startswith(MAGIC):
        raise DecodeError("the body does not start with the Kubernetes protobuf prefix k8s\\x00")
    type_meta, raw = b"", b""
    encoding = content_type = ""
    try:
        for number, wire_type, value in wire_fields(body[len(MAGIC) :]):
            if number not in _UNKNOWN_FIELDS:
                raise DecodeError(f"runtime.Unknown has no field {number}")
            if not isinstance(value, bytes):
                raise DecodeError(
                    f"runtime.Unknown field {number}: wire type {_WIRE_NAMES[wire_type]}, "
                    "expected length-delimited"
                )
            if number == _UNKNOWN_TYPE_META:
                type_meta += value  # a repeated message field merges, as protobuf does
            elif number == _UNKNOWN_RAW:
                raw = value
            elif number == _UNKNOWN_CONTENT_ENCODING:
                encoding = _text(value, "runtime.Unknown.contentEncoding")
            elif number == _UNKNOWN_CONTENT_TYPE:
                content_type = _text(value, "runtime.Unknown.contentType")
        api_version, kind = _type_meta(type_meta)
    except DecodeError as e:
        raise DecodeError(f"runtime.Unknown: {e}") from None
    if encoding:
        raise DecodeError(f"content encoding {encoding!r} is not supported")
    if content_type not in ("", MEDIA_TYPE):  # clients leave it empty: raw is protobuf
        raise DecodeError(f"content type {content_type!r} of the object is not supported")
    message = ROOTS.get((api_version, kind))
    if message is None:
        raise UnsupportedKind(f"no protobuf schema for {api_version}, Kind={kind}")
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, message)}


def _type_meta(data: bytes) -> tuple[str, str]:
    api_version = kind = ""
    for number, wire_type, value in wire_fields(data):
        if number not in (_TYPE_META_API_VERSION, _TYPE_META_KIND) or not isinstance(value, bytes):
            raise DecodeError(
                f"runtime.TypeMeta has no field {number} of wire type {_WIRE_NAMES[wire_type]}"
            )
        if number == _TYPE_META_API_VERSION:
            api_version = _text(value, "runtime.TypeMeta.apiVersion")
        else:
            kind = _text(value, "runtime.TypeMeta.kind")
    if not kind:
        raise DecodeError("the body names no kind (runtime.TypeMeta.kind)")
    return api_version, kind


# -- messages -------------------------------------------------------------------------


def decode_message(data: bytes, message: Message, path: str = "") -> dict[str, Any]:
    """The JSON object of one message; `path` (JSON field names) says where it is, for
    errors."""
    singular: dict[int, Any] = {}  # scalars: the last one counts; messages: the bytes
    repeated: dict[int, list[Any]] = {}
    maps: dict[int, dict[str, Any]] = {}
    try:
        for number, wire_type, value in wire_fields(data):
            field = message.fields.get(number)
            if field is None:
                raise DecodeError(f"{message.name} has no field {number}")
            where = _join(path, field)
            if field.map_values:
                _expect(message, field, wire_type, LENGTH_DELIMITED)
                assert isinstance(value, bytes)
                key, item = _map_entry(value, message, field, where)
                maps.setdefault(number, {})[key] = item
            elif field.repeated:
                values = repeated.setdefault(number, [])
                values.extend(
                    _repeated_values(message, field, wire_type, value, where, len(values))
                )
            elif field.is_message:
                _expect(message, field, wire_type, LENGTH_DELIMITED)
                assert isinstance(value, bytes)
                # A message field sent twice merges, as concatenated encodings do.
                singular[number] = singular.get(number, b"") + value
            else:
                singular[number] = _scalar(message, field, wire_type, value)
    except DecodeError as e:
        if not e.path:  # raised here, not in a message within
            e.path = path
        raise
    out: dict[str, Any] = {}
    for number, field in message.fields.items():
        if number in maps:
            out[field.json_name] = maps[number]
        elif number in repeated:
            out[field.json_name] = repeated[number]
        elif number in singular:
            value = singular[number]
            if field.is_message:
                value = _message_value(value, MESSAGES[field.type], _join(path, field))
                if field.inline:
                    out.update(value)
                    continue
            if field.keep_zero or not _is_zero(field, value):
                out[field.json_name] = value
    return out


def _scalar(message: Message, field: Field, wire_type: int, value: int | bytes) -> Any:
    """One scalar value as JSON has it."""
    if field.type in VARINT_SCALARS:
        _expect(message, field, wire_type, VARINT)
        assert isinstance(value, int)
        return _integer(field.type, value)
    _expect(message, field, wire_type, LENGTH_DELIMITED)
    assert isinstance(value, bytes)
    if field.type == "bytes":
        return base64.b64encode(value).decode("ascii")
    return _text(value, f"{message.name} field {field.number} ({field.json_name})")


def _integer(type_: str, value: int) -> int | bool:
    """A varint as the signed int32/int64 or bool it encodes (Go truncates an int32 to
    its low 32 bits; negative numbers arrive as 10-byte two's complement)."""
    if type_ == "bool":
        return value != 0
    bits = 32 if type_ == "int32" else 64
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _repeated_values(
    message: Message, field: Field, wire_type: int, value: int | bytes, where: str, index: int
) -> list[Any]:
    """The values one occurrence of a repeated field adds: one, or a packed run."""
    if field.is_message:
        _expect(message, field, wire_type, LENGTH_DELIMITED)
        assert isinstance(value, bytes)
        return [_message_value(value, MESSAGES[field.type], f"{where}[{index}]")]
    if field.type in VARINT_SCALARS and wire_type == LENGTH_DELIMITED:
        assert isinstance(value, bytes)
        values, position = [], 0
        while position < len(value):
            item, position = read_varint(value, position)
            values.append(_integer(field.type, item))
        return values
    return [_scalar(message, field, wire_type, value)]


def _map_entry(data: bytes, message: Message, field: Field, where: str) -> tuple[str, Any]:
    """A map entry: 1 key (a string here), 2 value."""
    key, item = "", None
    for number, wire_type, value in wire_fields(data):
        if number not in (1, 2) or not isinstance(value, bytes):
            raise DecodeError(
                f"{message.name} field {field.number} ({field.json_name}): a map entry has no "
                f"field {number} of wire type {_WIRE_NAMES[wire_type]}"
            )
        if number == 1:
            key = _text(value, f"{message.name} field {field.number} ({field.json_name}) key")
        elif field.is_message:
            item = _message_value(value, MESSAGES[field.type], f"{where}[{key}]")
        else:
            item = _scalar(message, field, wire_type, value)
    if item is None:  # the value left out: the type's zero value
        item = (
            _message_value(b"", MESSAGES[field.type], f"{where}[{key}]")
            if field.is_message else ""
        )  # fmt: skip
    return key, item


def _message_value(data: bytes, message: Message, path: str) -> Any:
    """A message as JSON has it: an object, or what its Go type marshals to."""
    decoded = decode_message(data, message, path)
    convert = _CONVERSIONS.get(message.name)
    if convert is None:
        return decoded
    try:
        return convert(decoded)
    except DecodeError as e:
        raise DecodeError(f"{message.name}: {e.message}", path) from None


def _time(decoded: dict[str, Any], *, micro: bool) -> str | None:
    seconds, nanos = decoded.get("seconds", 0), decoded.get("nanos", 0)
    if not decoded or (seconds == _GO_ZERO_TIME and nanos == 0):
        return None
    if not 0 <= nanos < 1_000_000_000:
        raise DecodeError(f"nanos {nanos} is out of range")
    try:
        moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise DecodeError(f"seconds {seconds} is out of range") from None
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    return f"{text}.{moment.microsecond:06d}Z" if micro else f"{text}Z"


def _quantity(decoded: dict[str, Any]) -> str:
    text = decoded.get("string")
    if text == "":
        raise DecodeError("an empty string is no quantity")
    return "0" if text is None else str(text)  # nothing set: a zero Quantity


def _int_or_string(decoded: dict[str, Any]) -> int | str:
    kind = decoded.get("type", 0)
    if kind == 0:
        return int(decoded.get("intVal", 0))
    if kind == 1:
        return str(decoded.get("strVal", ""))
    raise DecodeError(f"type {kind} is neither 0 (int) nor 1 (string)")


def _fields_v1(decoded: dict[str, Any]) -> Any:
    if "Raw" not in decoded:
        return None
    try:
        return json.loads(base64.b64decode(decoded["Raw"]) or b"null")
    except (ValueError, binascii.Error) as e:
        raise DecodeError(f"Raw is not JSON: {e}") from None


_CONVERSIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "meta.v1.Time": lambda decoded: _time(decoded, micro=False),
    "meta.v1.MicroTime": lambda decoded: _time(decoded, micro=True),
    "resource.Quantity": _quantity,
    "intstr.IntOrString": _int_or_string,
    "meta.v1.FieldsV1": _fields_v1,
}


def _is_zero(field: Field, value: Any) -> bool:
    """Whether Go's JSON encoder would leave the value out (omitempty): the scalars'
    zero values, and the zero Quantity and IntOrString a non-pointer field holds."""
    if field.type == "resource.Quantity":
        return bool(value == "0")
    if field.type == "intstr.IntOrString":
        return bool(value == 0)
    if field.is_message:
        return False  # Go writes a struct even when it is empty
    return bool(value == "" or value == 0)  # False == 0 too


def _expect(message: Message, field: Field, wire_type: int, expected: int) -> None:
    if wire_type != expected:
        raise DecodeError(
            f"{message.name} field {field.number} ({field.json_name or field.type}): wire "
            f"type {_WIRE_NAMES.get(wire_type, wire_type)}, expected {_WIRE_NAMES[expected]}"
        )


def _join(path: str, field: Field) -> str:
    if field.inline:
        return path
    return f"{path}.{field.json_name}" if path else field.json_name


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


# -- the API server's side ------------------------------------------------------------


def request_body(body: bytes) -> dict[str, Any]:
    """The object of a protobuf request body, or the ApiError to answer with."""
    try:
        return decode(body)
    except UnsupportedKind as e:
        raise ApiError(
            415, "UnsupportedMediaType",
            f"the body of the request was in an unknown format: {e}",
        ) from None  # fmt: skip
    except DecodeError as e:
        raise errors.bad_request(f"the request body is not a valid protobuf object: {e}") from None


def unsupported_body_type(content_type: str) -> ApiError:
    """415 for a create or update body in a format the server does not read."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(BODY_MEDIA_TYPES)} (got {content_type!r})",
    )


__all__ = [
    "BODY_MEDIA_TYPES",
    "MAGIC",
    "MEDIA_TYPE",
    "DecodeError",
    "UnsupportedKind",
    "decode",
    "decode_message",
    "read_varint",
    "request_body",
    "unsupported_body_type",
    "wire_fields",
]
