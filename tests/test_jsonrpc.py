"""Raw JSON-RPC lines on `mcp-tts serve`'s stdin: every request is answered exactly once, with an error
naming the problem where the line is no usable request; notifications never; the server serves on."""

from __future__ import annotations

import io
import json
import os

import pytest
from mcp_types import JSONRPCResponse

from mcp_tts import stdio
from mcp_tts.stdio import MAX_DEPTH, MAX_LINE_BYTES, encode, read_line
from tests.support.homes import server_env
from tests.support.raw_stdio import RawServer


@pytest.fixture
def raw(home):
    server = RawServer(server_env(home, None, MCP_TTS_OUTPUT="audio"))
    yield server
    server.close()


def call(request_id, arguments: str, name: str = "say") -> str:
    return ('{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"%s","arguments":%s}}'
            % (request_id, name, arguments))


NESTED = "[" * 200 + "]" * 200
# (line, the id it is answered with, the JSON-RPC error code, what the message names)
HOSTILE = [
    (call(1, '{"text":%s}' % NESTED), 1, -32602, ["params.arguments.text", f"deeper than {MAX_DEPTH} levels"]),
    (call(2, '{"text":"hi","x":%s}' % ('{"a":' * 300 + "1" + "}" * 300)), 2, -32602, ["params.arguments.x.a"]),
    ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":[1,2]}', 3, -32602, ["params", "an array"]),
    ('{"jsonrpc":"2.0","id":4,"method":"tools/list","params":5}', 4, -32602, ["params", "a number"]),
    ('{"jsonrpc":"2.0","id":5,"method":"tools/list","params":"x"}', 5, -32602, ["params", "a string"]),
    (call(6, '{"text":"a\\ud800b"}'), 6, -32602, ["params.arguments.text", "lone UTF-16 surrogate", "\\ud800"]),
    (call(7, '{"text":"a\\udc00"}'), 7, -32602, ["\\udc00"]),
    (call(8, '{"text":"hi","speed":NaN}'), 8, -32700, ["NaN is not a JSON value"]),
    (call(9, '{"text":NaN}'), 9, -32700, ["NaN"]),
    (call(10, '{"text":"hi","speed":-Infinity}'), 10, -32700, ["-Infinity"]),
    (call(11, '{"text":"hi","speed":-NaN}'), 11, -32700, ["not JSON"]),  # not even Python's json: id from the prefix
    ('{"jsonrpc":"2.0","id":12,"method":"tools/list","params":{"a":1}', 12, -32700, ["not JSON"]),
    ('{"jsonrpc":"2.0","id":13,"method":7}', 13, -32600, ["method must be a string"]),
    ('{"id":14,"method":"tools/list"}', 14, -32600, ['jsonrpc must be "2.0"']),
    ('{"jsonrpc":"2.0","id":15}', 15, -32600, ["names its method"]),
    ('[{"jsonrpc":"2.0","id":16,"method":"tools/list"}]', 16, -32600, ["batches", "one message per line"]),
    ('{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}', None, -32600, ["id must be a string or an integer"]),
    ('{"jsonrpc":"2.0","id":"\\ud800","method":"tools/list"}', None, -32600, ["id must be"]),
    ('{"jsonrpc":"2.0","id":true,"method":"tools/list"}', None, -32600, ["id must be"]),
    ("this is not json", None, -32700, ["not JSON"]),
    ("[]", None, -32600, ["batches"]),
    ("42", None, -32600, ["a JSON object"]),
    ('{"jsonrpc":"2.0","id":17,"method":"tools/list","params":{"x":' + "[" * 5000 + "]" * 5000 + "}}", 17, -32600,
     ["deeper than"]),  # past what Python's json parses: the id is read from the line's start
    ("[" * 100_000, None, -32600, ["deeper than"]),
    (call(18, '{"text":"%s"}' % ("x" * MAX_LINE_BYTES)), 18, -32600, [f"over {MAX_LINE_BYTES} bytes"]),
]


def test_every_hostile_request_is_answered_once_and_the_server_serves_on(raw):
    for n, (line, request_id, code, fragments) in enumerate(HOSTILE):
        raw.send(line)
        answer = raw.read()
        assert answer is not None, f"no answer to {line[:80]!r}"
        assert answer["id"] == request_id and answer["error"]["code"] == code, (line[:80], answer)
        for fragment in fragments:
            assert fragment in answer["error"]["message"], (line[:80], answer)
        raw.ping(f"alive-{n}")  # exactly one answer: the next line is the ping's


def test_broken_notifications_get_no_answer(raw):
    for line in ['{"jsonrpc":"2.0","method":"notifications/x","params":[1]}',
                 '{"jsonrpc":"2.0","method":"notifications/x","params":{"a":NaN}}',
                 '{"jsonrpc":"2.0","method":"notifications/x","params":{"a":"\\ud800"}}',
                 '{"jsonrpc":"2.0","method":"notifications/x","params":{"a":%s}}' % NESTED,
                 '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nobody"}}',
                 "", "   "]:
        raw.send(line)
    raw.ping("after-notifications")


def test_valid_odd_requests_still_work(raw):
    raw.send(call(1, '{"text":"a \\ud83d\\ude00 b","raw":true}'))  # a surrogate pair is a character
    assert not raw.read(30)["result"]["isError"]
    raw.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"say","arguments":{"text":"ok \xff"}}}')
    assert "result" in raw.read(30)  # bytes that are not UTF-8 are read as U+FFFD, as the SDK reads them
    raw.send(call(3, '{"text":%s}' % ("[" * 50 + "]" * 50)))  # within the depth limit: the tool says what is wrong
    answer = raw.read()
    assert answer["result"]["isError"] and "text" in answer["result"]["content"][0]["text"]
    raw.send(call('"s-4"', "{}", name="list_voices"))
    assert raw.read(30)["id"] == "s-4"


def test_a_voice_folder_named_in_bytes_that_are_not_utf8_is_answered(home):
    """Such a name comes back from the file system holding a lone surrogate (os.fsdecode)."""
    voices = home / "data" / "voices"
    voices.mkdir(parents=True)
    os.mkdir(os.fsencode(voices) + b"/voice-\xff")
    raw = RawServer(server_env(home, None, MCP_TTS_OUTPUT="audio"))
    try:
        raw.send(call(1, "{}", name="list_voices"))
        answer = raw.read(30)
        assert answer["id"] == 1 and not answer["result"]["isError"], answer
        problems = answer["result"]["structuredContent"]["problems"]
        assert any("'voice-\\udcff'" in line and "not UTF-8" in line for line in problems), problems
        raw.ping("after")
    finally:
        raw.close()


# --- the line reader itself, without a process --------------------------------------------------------


def test_read_line_passes_good_messages_and_nothing_for_blank_lines():
    read = read_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    assert read.answer is None and read.message.method == "ping"
    assert read_line(b"\n") == read_line(b"  \r\n") == type(read)()


def test_read_line_turns_a_broken_client_reply_into_an_error_for_the_server_request():
    read = read_line(b'{"jsonrpc":"2.0","id":7,"result":[1]}')
    assert read.answer is None and read.message.id == 7 and read.message.error.code == -32600
    assert "reply was unusable" in read.message.error.message
    assert read_line(b'{"jsonrpc":"2.0","result":{"a":NaN}}') == type(read)()  # no id to match: logged only


def test_read_line_depth_limit_is_exact():
    ok = '{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":%s}}' % ("[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2))
    assert read_line(ok.encode()).message is not None
    deep = ok.replace("[", "[[", 1).replace("]", "]]", 1)
    assert read_line(deep.encode()).answer.error.code == -32602


def test_a_reply_holding_a_lone_surrogate_is_sent_with_a_replacement_character():
    """The SDK's writer raised on it and the server ended; the reply goes out, as valid UTF-8 JSON."""
    line = encode(JSONRPCResponse(jsonrpc="2.0", id=1, result={"name": os.fsdecode(b"voice-\xff")}))
    assert json.loads(line.decode("utf-8")) == {"jsonrpc": "2.0", "id": 1, "result": {"name": "voice-\ufffd"}}


def test_a_line_past_the_limit_is_cut_and_the_next_line_is_read_whole(monkeypatch):
    monkeypatch.setattr(stdio, "MAX_LINE_BYTES", 10)
    lines = list(stdio._lines(io.BytesIO(b"0123456789\n" + b"x" * 35 + b"\nnext\n" + b"y" * 25)))
    assert lines == [b"0123456789\n", b"x" * 11, b"next\n", b"y" * 11]
    assert read_line(lines[1]).answer.error.message.startswith("the line is over 10 bytes")
