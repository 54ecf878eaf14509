"""JSON for the runtime's hot path, straight from CPython's `_json` accelerator.

`import json` pulls in `re` and `enum` (about 7 ms here, half a container start);
the C scanner and encoder underneath it need neither. Semantics match
`json.loads` / `json.dumps(obj)` (compact separators aside) for the plain data the
runtime reads and writes: config.json, state files, channel messages.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _ScanContext:
    """The attributes `_json.make_scanner` reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_ScanContext)  # type: ignore[arg-type]  # duck-typed decoder


def _unencodable(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def loads(data: str | bytes) -> Any:
    text = data.decode() if isinstance(data, bytes) else data
    start = 0
    while start < len(text) and text[start] in _WHITESPACE:
        start += 1
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"expecting a JSON value at character {e.value}") from None
    except SystemError:
        # The C scanner reports most syntax errors with json.decoder's exception
        # class, found only if that module is loaded: on this rare path, load it
        # and let `json` word the error.
        import json

        json.loads(text)
        raise
    while end < len(text) and text[end] in _WHITESPACE:
        end += 1
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def dumps(obj: object) -> str:
    return "".join(_encode(obj, 0))
