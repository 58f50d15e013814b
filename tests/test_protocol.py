"""The wire protocol: every message survives a frame, and a bad stream is a ProtocolError, never a hang."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tracemalloc

import pytest

from mcp_tts.engines.contract import protocol
from mcp_tts.engines.contract.protocol import (
    HEADER,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    Message,
    ProtocolError,
    decode,
    encode,
    frame_sizes,
    read_message,
)

# One value per field type found in the module; a message with a new field type fails here first.
SAMPLE_VALUES = {
    "int": 7,
    "float": 1.5,
    "float | None": 2.5,
    "bool": True,
    "str": "naïve «voix» 語 😀 \u200d\t\n end",
    "str | None": "maybe — ünïcode",
    "list[str]": ["a", "é", "😀"],
    "dict[str, Any]": {"nested": [1, "two", None, {"ü": 3.25, "ok": False}], "empty": {}},
    "list[dict[str, Any]]": [{"id": "ü1", "client": "1-ab", "seconds": 1.25, "playing": True}, {}],
}
PAYLOAD = bytes(range(256)) * 3 + b"\x00\xff"
MESSAGE_NAMES = sorted(protocol._MESSAGES)


def sample(cls: type[Message], *, defaults: bool = False) -> Message:
    """An instance with every field set, or with only the required ones (the rest at their defaults)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if defaults and not required:
            continue
        assert f.type in SAMPLE_VALUES, f"{cls.__name__}.{f.name}: add a sample for type {f.type!r}"
        kwargs[f.name] = SAMPLE_VALUES[f.type]
    return cls(**kwargs)


def split(frame: bytes) -> tuple[bytes, bytes]:
    header_len, payload_len = frame_sizes(frame[:HEADER.size])
    assert len(frame) == HEADER.size + header_len + payload_len
    return frame[HEADER.size:HEADER.size + header_len], frame[HEADER.size + header_len:]


def frame(header: dict | bytes, payload: bytes = b"") -> bytes:
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    return HEADER.pack(len(data), len(payload)) + data + payload


def read_all(data: bytes, *, eof: bool = True, chunk: int | None = None) -> list:
    """Every read_message result over a real StreamReader fed `data` (in pieces of `chunk` bytes)."""

    async def main():
        reader = asyncio.StreamReader()

        async def feed():
            step = chunk or max(len(data), 1)
            for start in range(0, len(data), step):
                reader.feed_data(data[start:start + step])
                await asyncio.sleep(0)
            if eof:
                reader.feed_eof()

        feeder = asyncio.create_task(feed())
        results = []
        while True:
            result = await asyncio.wait_for(read_message(reader), 5)
            results.append(result)
            if result is None:
                break
        await feeder
        return results

    return asyncio.run(main())


def test_registry_holds_every_message_class_under_its_own_name():
    defined = {obj for obj in vars(protocol).values()
               if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message}
    assert set(protocol._MESSAGES.values()) == defined
    for name, cls in protocol._MESSAGES.items():
        assert name and cls.name == name


def test_a_second_message_with_a_used_name_is_refused():
    with pytest.raises(TypeError, match="used twice"):
        type("Impostor", (Message,), {"__annotations__": {}, "name": "hello"})
    assert protocol._MESSAGES["hello"] is protocol.Hello


@pytest.mark.parametrize("defaults", [False, True], ids=["all_fields", "defaults"])
@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_every_message_round_trips_through_a_frame(name, defaults):
    message = sample(protocol._MESSAGES[name], defaults=defaults)
    header, payload = split(encode(message, PAYLOAD))
    decoded = decode(header)
    assert type(decoded) is type(message)
    assert decoded == message
    assert payload == PAYLOAD


@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_every_message_round_trips_without_a_payload(name):
    message = sample(protocol._MESSAGES[name])
    header, payload = split(encode(message))
    assert decode(header) == message
    assert payload == b""


def test_non_ascii_text_survives_and_lengths_count_bytes():
    text = "Grüße, 世界! 👩‍💻 — « ça va ? »"
    message = protocol.Synthesize(id="r1", backend="builtin", text=text)
    data = encode(message)
    header, _ = split(data)
    assert len(header) > len(header.decode())  # the length sent counts bytes, not characters
    assert text.encode() in header  # sent as UTF-8, not as \u escapes
    assert decode(header).text == text


def test_a_lone_surrogate_cannot_be_encoded_into_a_frame():
    with pytest.raises(UnicodeEncodeError):
        encode(protocol.Synthesize(id="r1", backend="builtin", text="bad \ud800 half"))


@pytest.mark.parametrize("header_len, payload_len, ok", [
    (0, 0, True),
    (MAX_HEADER_BYTES, 0, True),
    (0, MAX_PAYLOAD_BYTES, True),
    (MAX_HEADER_BYTES + 1, 0, False),
    (0, MAX_PAYLOAD_BYTES + 1, False),
    (2**32 - 1, 2**32 - 1, False),
])
def test_frame_sizes_limits(header_len, payload_len, ok):
    prefix = HEADER.pack(header_len, payload_len)
    if ok:
        assert frame_sizes(prefix) == (header_len, payload_len)
    else:
        with pytest.raises(ProtocolError, match="too large"):
            frame_sizes(prefix)


GOOD_CANCEL = {"t": "cancel", "id": "r1"}


@pytest.mark.parametrize("header", [
    b"",
    b"not json",
    b"{\"t\": \"cancel\", \"id\": ",
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"[]",
    b"[\"cancel\", \"r1\"]",
    json.dumps({"id": "r1"}).encode(),  # no message name
    json.dumps({"t": "no_such_message", "id": "r1"}).encode(),
    json.dumps({"t": "", "id": "r1"}).encode(),
    json.dumps({"t": ["cancel"], "id": "r1"}).encode(),
    json.dumps({"t": "cancel"}).encode(),  # missing field
    json.dumps({**GOOD_CANCEL, "extra": 1}).encode(),  # unknown field
    json.dumps({**GOOD_CANCEL, "name": "abort"}).encode(),  # the class name is not a field
    json.dumps({"t": "hello", "protocol": 1, "client": "x"}).encode(),  # pid missing
], ids=lambda h: h[:40].decode("utf-8", "replace"))
def test_decode_refuses_bad_headers(header):
    with pytest.raises(ProtocolError, match="bad message header"):
        decode(header)


@pytest.mark.parametrize("header", [b"null", b"\"cancel\"", b"42", b"true"])
def test_decode_refuses_a_header_that_is_not_a_json_object(header):
    with pytest.raises(ProtocolError):
        decode(header)


def test_decode_refuses_deeply_nested_json():
    depth = 100_000
    header = b'{"t":"voices","id":"r1","backends":' + b"[" * depth + b"]" * depth + b"}"
    assert len(header) < MAX_HEADER_BYTES
    with pytest.raises(ProtocolError):
        decode(header)


def test_read_message_reads_several_frames_then_none_at_a_clean_end():
    messages = [(sample(protocol._MESSAGES[name]), PAYLOAD if i % 2 else b"")
                for i, name in enumerate(MESSAGE_NAMES)]
    data = b"".join(encode(m, p) for m, p in messages)
    assert read_all(data) == messages + [None]


def test_read_message_reassembles_frames_arriving_a_byte_at_a_time():
    messages = [(protocol.Hello(protocol=1, client="ç", pid=3), b""),
                (protocol.AudioChunk(id="r1", seq=0), PAYLOAD),
                (protocol.EndOfAudio(id="r1"), b"")]
    data = b"".join(encode(m, p) for m, p in messages)
    assert read_all(data, chunk=1) == messages + [None]


def test_read_message_returns_none_on_an_empty_stream():
    assert read_all(b"") == [None]


def test_read_message_with_a_zero_length_header_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        read_all(HEADER.pack(0, 0))


WHOLE = encode(protocol.AudioChunk(id="r1", seq=4), PAYLOAD)
HEADER_END = HEADER.size + frame_sizes(WHOLE[:HEADER.size])[0]


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size, HEADER.size + 3, HEADER_END,
                                 HEADER_END + 1, len(WHOLE) - 1],
                         ids=["in_prefix", "prefix_less_one", "after_prefix", "in_header", "after_header",
                              "in_payload", "payload_less_one"])
def test_read_message_at_an_end_inside_a_frame_is_a_protocol_error(cut):
    good = encode(protocol.Cancel(id="r0"))
    with pytest.raises(ProtocolError, match="inside a frame"):
        read_all(good + WHOLE[:cut])


@pytest.mark.parametrize("header_len, payload_len", [
    (MAX_HEADER_BYTES + 1, 0),
    (10, MAX_PAYLOAD_BYTES + 1),
    (2**32 - 1, 2**32 - 1),
])
def test_read_message_refuses_an_oversized_frame_from_its_prefix_alone(header_len, payload_len):
    """No more bytes arrive and the stream stays open: the refusal must come from the prefix, at once."""

    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(HEADER.pack(header_len, payload_len) + b"{}")
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="too large"):
                await asyncio.wait_for(read_message(reader), 5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20
        assert await reader.readexactly(2) == b"{}"  # nothing past the prefix was consumed

    asyncio.run(main())


@pytest.mark.parametrize("header", [
    b"not json",
    json.dumps({"t": "no_such_message", "id": "r1"}).encode(),
    json.dumps({"t": "cancel"}).encode(),
    json.dumps({**GOOD_CANCEL, "extra": True}).encode(),
])
def test_read_message_refuses_a_bad_header_after_good_frames(header):
    good = encode(protocol.Cancel(id="r0"))

    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(good + frame(header) + good)
        reader.feed_eof()
        assert await read_message(reader) == (protocol.Cancel(id="r0"), b"")
        with pytest.raises(ProtocolError, match="bad message header"):
            await read_message(reader)

    asyncio.run(main())
