"""The trace format: what an endpoint did, as JSON lines (version 1).

A trace file is UTF-8 text, one JSON object per line:

    {"format": "mptcp-ref-trace", "version": 1, ...}          <- header, first line
    {"type": "AppConnect"}
    {"type": "SegmentSent", "subflow": 0, "flags": "S", "payload": 0, "dsn": null,
     "options": [{"kind": "MP_CAPABLE", "keys": 0, "checksum": false}]}
    {"type": "SegmentReceived", "subflow": 0, "flags": "SA", ..., "acks_fin": false}
    ...

- The header may carry more keys (e.g. "endpoint", "source", "config"); readers ignore
  them. A reader accepts only the versions it knows.
- Each event line has "type" (a class name of `spec.events`) and that class's fields by
  name; fields with defaults may be left out. Options are objects with "kind" (the RFC
  8684 subtype name) and the option summary's fields. An event line may also carry
  "t" (a timestamp in seconds, any number) which `load_trace` ignores.
- Blank lines are ignored.

Anything else is a `TraceError` (the one error type of this module), naming the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import IO, Any

from spec.events import EVENT_TYPES, OPTION_TYPES, Event

FORMAT = "mptcp-ref-trace"
VERSION = 1


class TraceError(ValueError):
    """A trace file that is not a valid version-1 trace (the message names the line)."""


def _encode_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_encode_value(item) for item in value]
    if hasattr(value, "kind") and type(value) in OPTION_TYPES.values():
        return {"kind": value.kind, **{f.name: _encode_value(getattr(value, f.name))
                                       for f in fields(value)}}
    return value


def event_to_json(event: Event) -> dict[str, Any]:
    if type(event).__name__ not in EVENT_TYPES:
        raise TraceError(f"not an event type of spec.events: {event!r}")
    return {"type": type(event).__name__,
            **{f.name: _encode_value(getattr(event, f.name)) for f in fields(event)}}


def dump_trace(events: Iterable[Event], path_or_file: str | Path | IO[str],
               **header: Any) -> None:
    """Write `events` as a version-1 trace (extra keyword arguments go into the header)."""
    lines = [json.dumps({"format": FORMAT, "version": VERSION, **header}, sort_keys=True)]
    lines += [json.dumps(event_to_json(event), sort_keys=True) for event in events]
    text = "\n".join(lines) + "\n"
    if isinstance(path_or_file, str | Path):
        Path(path_or_file).write_text(text, encoding="utf-8")
    else:
        path_or_file.write(text)


def _check(kind: str, value: Any, where: str) -> Any:
    """Check a JSON value against a field's annotation (as written in spec.events)."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TraceError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise TraceError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TraceError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == "int | None":
        return None if value is None else _check("int", value, where)
    if kind == "tuple[int, ...]":
        if not isinstance(value, list):
            raise TraceError(f"{where}: expected a list, got {value!r}")
        return tuple(_check("int", item, where) for item in value)
    if kind == "tuple[Option, ...]":
        if not isinstance(value, list):
            raise TraceError(f"{where}: expected a list of options, got {value!r}")
        return tuple(_build(item, OPTION_TYPES, "kind", f"{where}[{i}]")
                     for i, item in enumerate(value))
    raise TraceError(f"{where}: unsupported field type {kind}")  # a spec.events change


def _build(obj: Any, types: dict[str, type], tag: str, where: str,
           ignore: frozenset[str] = frozenset()) -> Any:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object, got {obj!r}")
    name = obj.get(tag)
    if name not in types:
        raise TraceError(f"{where}: unknown {tag} {name!r}")
    cls = types[name]
    known = {f.name: f for f in fields(cls)}
    extra = set(obj) - set(known) - {tag} - ignore
    if extra:
        raise TraceError(f"{where}: unknown field(s) {sorted(extra)} for {name}")
    values = {}
    for field in known.values():
        if field.name in obj:
            values[field.name] = _check(str(field.type), obj[field.name],
                                        f"{where}: {name}.{field.name}")
        elif field.default is MISSING:
            raise TraceError(f"{where}: {name} needs field {field.name!r}")
    return cls(**values)


def parse_trace(text: str) -> list[Event]:
    """Events of a version-1 trace given as text."""
    events: list[Event] = []
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise TraceError(f"{where}: not JSON ({error.msg})") from None
        if not header_seen:
            if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                raise TraceError(f"{where}: not a {FORMAT} header")
            if obj.get("version") != VERSION:
                raise TraceError(f"{where}: unsupported trace version {obj.get('version')!r}")
            header_seen = True
            continue
        if isinstance(obj, dict) and "t" in obj and (
                isinstance(obj["t"], bool) or not isinstance(obj["t"], int | float)):
            raise TraceError(f"{where}: 't' must be a number")
        events.append(_build(obj, EVENT_TYPES, "type", where, frozenset({"t"})))
    if not header_seen:
        raise TraceError("empty trace: no header line")
    return events


def load_trace(path_or_file: str | Path | IO[str]) -> list[Event]:
    """Read a version-1 trace; any problem is a TraceError."""
    try:
        if isinstance(path_or_file, str | Path):
            text = Path(path_or_file).read_text(encoding="utf-8")
        else:
            text = path_or_file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"cannot read trace: {error}") from None
    return parse_trace(text)
