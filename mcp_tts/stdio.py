"""The server's stdio transport: one JSON-RPC message a line on stdin, one a line on stdout.

Runs in the server process, in front of the MCP SDK's session. The SDK's own transport
(mcp.server.stdio) passes a line it cannot validate to the session as an exception, and the session
drops it without a word, so a client that sent that request waits for ever; and a reply holding a
string that UTF-8 cannot encode ends its writer, and with it the server. Here each line is read and
checked first (`read_line`, pure): a line that is no usable message is answered with a JSON-RPC
error naming the problem, with the request's id where one can be read, and the session never sees
it; a broken notification is logged and dropped, as JSON-RPC wants.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

__all__ = ["MAX_DEPTH", "MAX_LINE_BYTES", "Read", "encode", "read_line", "stdio_transport"]

log = logging.getLogger("mcp_tts.stdio")

MAX_DEPTH = 64  # objects and arrays inside each other, the message itself counting 1; no tool needs 5
MAX_LINE_BYTES = 4 * 2**20  # one message; a tool's arguments are a few kB at most (text: 5000 characters)

# the id of a line that is not JSON, read only where it can be nothing else: a top-level key before
# any nested object or array (a JSON string cannot hold `"id":` unescaped)
_PREFIX_ID = re.compile(r'^\s*\{[^{}\[\]]*?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*[,}]')


@dataclass(frozen=True)
class Read:
    """What one line of stdin comes to: a message for the session, or an answer straight back."""

    message: JSONRPCMessage | None = None
    answer: JSONRPCError | None = None


def read_line(line: bytes) -> Read:
    """One line of stdin, checked. Nothing in it (`Read()`) for a blank line or a broken notification
    (logged); a broken reply of the client's goes to the session as an error for its own request."""
    text = line.decode("utf-8", errors="replace").strip()  # as the SDK's transport reads it
    if not text:
        return Read()
    if len(line.rstrip(b"\r\n")) > MAX_LINE_BYTES:  # its start only: see _lines
        return _refuse(_id_in_prefix(text), INVALID_REQUEST, f"the line is over {MAX_LINE_BYTES} bytes, more "
                       f"than any message needs", kind="request")
    constants: list[str] = []
    try:
        data = json.loads(text, parse_constant=lambda name: constants.append(name) or float("nan"))
    except ValueError as exc:
        return _refuse(_id_in_prefix(text), PARSE_ERROR, f"not JSON: {exc}", kind="request")
    except RecursionError:  # nested past what json can parse at all
        return _refuse(_id_in_prefix(text), INVALID_REQUEST, f"the message is nested deeper than {MAX_DEPTH} "
                       f"levels (objects and arrays inside each other)", kind="request")
    if isinstance(data, list):
        return _batch(data)
    if not isinstance(data, dict):
        code, what = (PARSE_ERROR, "not JSON") if constants else (INVALID_REQUEST, f"not {_kind(data)}")
        return _refuse(None, code, f"a message is a JSON object, {what}", kind="request")
    kind = "notification" if "method" in data and "id" not in data else (
        "reply" if "method" not in data and ("result" in data or "error" in data) else "request")
    request_id, id_problem = _request_id(data)
    if constants:
        problem = PARSE_ERROR, f"not JSON: {constants[0]} is not a JSON value (JSON numbers are finite)"
    else:
        problem = id_problem or _problem(data)
    if problem is None:
        try:
            return Read(message=jsonrpc_message_adapter.validate_json(text, by_name=False))  # as the SDK reads it
        except ValidationError as exc:
            problem = INVALID_REQUEST, f"not a JSON-RPC message: {_summary(exc)}"
    code, message = problem
    if kind == "reply" and request_id is not None:  # the server's own request then fails, rather than waits
        return Read(message=JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(
            code=code, message=f"the client's reply was unusable: {message}")))
    return _refuse(request_id, code, message, kind)


def _problem(data: dict) -> tuple[int, str] | None:
    """What makes a decoded message unusable, before the SDK reads it: (code, message) or None."""
    if data.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, f'jsonrpc must be "2.0", given {_short(data.get("jsonrpc"))}'
    if "method" not in data and "result" not in data and "error" not in data:
        return INVALID_REQUEST, "a request names its method"
    if "method" in data and not isinstance(data["method"], str):
        return INVALID_REQUEST, f"method must be a string, given {_kind(data['method'])}"
    if "params" in data and not isinstance(data["params"], (dict, type(None))):
        return INVALID_PARAMS, (f"params must be a JSON object naming each parameter, given {_kind(data['params'])}")
    deep = _too_deep(data)
    if deep is not None:
        code = INVALID_PARAMS if deep.startswith("params") else INVALID_REQUEST
        return code, f"{deep} is nested deeper than {MAX_DEPTH} levels (objects and arrays inside each other)"
    where = _lone_surrogate(data)
    if where is not None:
        path, char = where
        code = INVALID_PARAMS if path.startswith("params") else INVALID_REQUEST
        return code, (f"{path} holds a lone UTF-16 surrogate (\\u{ord(char):04x}), which is not text; "
                      f"send valid Unicode")
    return None


def _request_id(data: dict) -> tuple[str | int | None, tuple[int, str] | None]:
    """The message's id if it is one JSON-RPC allows (a string or an integer), else None and why."""
    if "id" not in data:
        return None, None
    value = data["id"]
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, str) and _surrogate_at(value) is None:
        return value, None
    return None, (INVALID_REQUEST, f"id must be a string or an integer, given {_short(value)}")


def _walk(data: Any) -> Iterator[tuple[str, int, Any]]:
    """(path, depth, value) of every value inside `data`, the message itself at depth 1; iterative, so
    any depth json could parse is walked."""
    stack = [("", 1, data)]
    while stack:
        path, depth, value = stack.pop()
        yield path, depth, value
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), depth + 1, v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", depth + 1, v) for i, v in enumerate(value))


def _too_deep(data: dict) -> str | None:
    for path, depth, value in _walk(data):
        if depth > MAX_DEPTH and isinstance(value, (dict, list)):
            return _trim(path)
    return None


def _lone_surrogate(data: dict) -> tuple[str, str] | None:
    for path, _, value in _walk(data):
        texts = [value] if isinstance(value, str) else list(value) if isinstance(value, dict) else []
        for text in texts:  # a string, or an object's keys
            char = _surrogate_at(text)
            if char is not None:
                return _trim(path) or "the message", char
    return None


def _surrogate_at(text: str) -> str | None:
    """The first lone surrogate in `text` (json joins the valid pairs), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def _batch(items: list) -> Read:
    """MCP has no batches since 2025-06-18; each request in one gets this answer (the first is sent
    back here, the rest are logged: one line in, one line out)."""
    ids = [i for i in (_request_id(item)[0] if isinstance(item, dict) else None for item in items) if i is not None]
    if len(ids) > 1:
        log.warning("a batch of %d messages was refused with one answer, for id %r", len(items), ids[0])
    return Read(answer=_error(ids[0] if ids else None, INVALID_REQUEST,
                              "batches (JSON arrays of messages) are not accepted: send one message per line"))


def _id_in_prefix(text: str) -> str | int | None:
    match = _PREFIX_ID.match(text)
    if not match:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    return value if isinstance(value, int) or _surrogate_at(value) is None else None


def _refuse(request_id: str | int | None, code: int, message: str, kind: str) -> Read:
    """A request's answer; a notification, or a reply with no id to match, is only logged."""
    if kind != "request":
        log.warning("ignored a %s: %s", kind, message)
        return Read()
    return Read(answer=_error(request_id, code, message))


def _error(request_id: str | int | None, code: int, message: str) -> JSONRPCError:
    log.warning("answered %r with error %d: %s", request_id, code, message)
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in errors[:3])


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)  # ascii: a lone surrogate is shown, not sent raw
    return text if len(text) <= 40 else text[:37] + "..."


def _trim(path: str) -> str:
    return path if len(path) <= 120 else path[:117] + "..."


# --- the transport ---------------------------------------------------------------------------------


def encode(message: JSONRPCMessage) -> bytes:
    """One message as a line. A string UTF-8 cannot encode (a lone surrogate, say from a file name
    that is not UTF-8) is sent as U+FFFD rather than ending the server."""
    try:
        line = message.model_dump_json(by_alias=True, exclude_unset=True)
    except ValueError:  # PydanticSerializationError
        line = json.dumps(message.model_dump(mode="json", by_alias=True, exclude_unset=True), ensure_ascii=False)
        line = line.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        log.warning("a reply held text that is not Unicode; sent with U+FFFD in its place")
    return line.encode("utf-8") + b"\n"


def _claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """The protocol's stdin and stdout on private descriptors; fd 0 then reads /dev/null and fd 1 writes
    to stderr, so a child process or a stray print can never read or write the protocol's lines."""
    wire_in, wire_out = os.fdopen(_dup(0), "rb"), os.fdopen(_dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return wire_in, wire_out


def _dup(fd: int) -> int:
    if sys.platform == "win32":  # pragma: no cover
        return os.dup(fd)
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


@asynccontextmanager
async def stdio_transport() -> AsyncIterator[tuple[MemoryObjectReceiveStream, MemoryObjectSendStream]]:
    """The (read, write) stream pair a low-level MCP server runs on, over this process's stdio."""
    wire_in, wire_out = _claim_stdio()
    to_session, from_wire = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_wire, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    answers = to_wire.clone()  # the reader's own error replies share the one writer
    reading = anyio.CancelScope()

    async def read() -> None:
        with reading:
            async with to_session, answers:
                lines = _lines(wire_in)
                while line := await anyio.to_thread.run_sync(next, lines, None, abandon_on_cancel=True):
                    checked = read_line(line)
                    if checked.answer is not None:
                        await answers.send(SessionMessage(checked.answer))
                    elif checked.message is not None:
                        await to_session.send(SessionMessage(checked.message))

    async def write() -> None:
        async with from_session:
            async for item in from_session:
                data = encode(item.message)
                await anyio.to_thread.run_sync(_write_all, wire_out, data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(write)
        try:
            yield from_wire, to_wire
        finally:
            reading.cancel()
            to_wire.close()


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each line of `stream`; of one over MAX_LINE_BYTES only its start (read_line refuses it), the rest
    is read and let go, so no line is ever held whole past the limit."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line


def _write_all(stream: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[stream.write(view):]
