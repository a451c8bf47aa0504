"""Properties of the NDJSON codec: any message list survives any chunking; overlong lines resync."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from acpd.protocol import jsonio
from acpd.protocol.framing import Frame, FrameTooLong, LineDecoder, encode_frame
from acpd.protocol.jsonio import JsonObject, JsonValue
from tests.strategies import json_values, property_settings

PROPERTY_SETTINGS = property_settings(100)

request_ids = st.integers(min_value=-(2**31), max_value=2**31) | st.text(max_size=10)
# text with the characters that matter to line framing: newlines, CR, separators, non-ASCII
tricky_text = st.text(alphabet=st.sampled_from('ab \n\r\t\u2028\u2029\x00é😀{}"\\'), max_size=30)
jsonrpc_messages = st.one_of(
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": request_ids, "method": tricky_text},
        optional={"params": st.dictionaries(tricky_text, json_values, max_size=4)},
    ),
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": tricky_text},
        optional={"params": st.dictionaries(st.text(max_size=8), json_values, max_size=4), "_meta": json_values},
    ),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": request_ids | st.none(), "result": json_values}),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.just("2.0"),
            "id": request_ids | st.none(),
            "error": st.fixed_dictionaries(
                {"code": st.integers(-32800, -32000), "message": tricky_text}, optional={"data": json_values}
            ),
        }
    ),
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def decode_all(decoder: LineDecoder, chunks: list[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    frames.extend(decoder.finish())
    return frames


@PROPERTY_SETTINGS
@given(
    messages=st.lists(jsonrpc_messages, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=12),
    crlf=st.booleans(),
)
def test_encoded_messages_decode_to_the_same_messages_over_any_chunking(
    messages: list[JsonObject], cuts: list[int], crlf: bool
) -> None:
    stream = b"".join(encode_frame(message) for message in messages)
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    frames = decode_all(LineDecoder(), split_at(stream, cuts))
    assert all(isinstance(frame, bytes) for frame in frames)
    assert [jsonio.loads(frame) for frame in frames if isinstance(frame, bytes)] == messages


@PROPERTY_SETTINGS
@given(message=jsonrpc_messages)
def test_an_encoded_frame_is_one_line(message: JsonObject) -> None:
    frame = encode_frame(message)
    assert frame.endswith(b"\n")
    assert b"\n" not in frame[:-1]
    assert b"\r" not in frame


@PROPERTY_SETTINGS
@given(
    messages=st.lists(jsonrpc_messages, min_size=1, max_size=6),
    blank_lines=st.lists(st.sampled_from([b"\n", b"  \n", b"\r\n", b"\t \r\n"]), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=12),
)
def test_blank_lines_between_messages_produce_no_frames(
    messages: list[JsonObject], blank_lines: list[bytes], cuts: list[int]
) -> None:
    pieces = [encode_frame(message) for message in messages]
    for index, blank in enumerate(blank_lines):
        pieces.insert(index % (len(pieces) + 1), blank)
    frames = decode_all(LineDecoder(), split_at(b"".join(pieces), cuts))
    assert [jsonio.loads(frame) for frame in frames if isinstance(frame, bytes)] == messages
    assert len(frames) == len(messages)


@PROPERTY_SETTINGS
@given(
    lines=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=64).map(lambda b: b.replace(b"\n", b"x").replace(b"\r", b"y")),
            st.integers(min_value=65, max_value=400).map(lambda n: b"L" * n),
        ),
        max_size=10,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=16),
)
def test_overlong_lines_become_frame_too_long_and_the_decoder_resyncs(lines: list[bytes], cuts: list[int]) -> None:
    limit = 64
    stream = b"".join(line + b"\n" for line in lines)
    frames = decode_all(LineDecoder(max_line_bytes=limit), split_at(stream, cuts))
    expected_lines = [line for line in lines if line.strip()]
    assert len(frames) == len(expected_lines)
    for frame, line in zip(frames, expected_lines, strict=True):
        if len(line) > limit:
            assert isinstance(frame, FrameTooLong)
            assert frame.size > limit
        else:
            assert frame == line


@PROPERTY_SETTINGS
@given(
    head=st.lists(jsonrpc_messages, max_size=4),
    last=jsonrpc_messages,
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=8),
)
def test_an_unterminated_last_line_is_returned_by_finish(
    head: list[JsonObject], last: JsonObject, cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(message) for message in head) + jsonio.dumps(last)
    frames = decode_all(LineDecoder(), split_at(stream, cuts))
    decoded: list[JsonValue] = [jsonio.loads(frame) for frame in frames if isinstance(frame, bytes)]
    assert decoded == [*head, last]


class _LineByLine(LineDecoder):
    """The decoder without its fast path for reads of whole short lines."""

    def feed(self, data: bytes) -> list[Frame]:
        return self._feed_each(data)


@PROPERTY_SETTINGS
@given(
    data=st.binary(max_size=300)
    | st.lists(st.sampled_from([b"ab", b"\n", b" ", b"\r", b"{}", b"x" * 9]), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    limit=st.integers(min_value=1, max_value=12),
)
def test_the_split_of_whole_lines_at_once_frames_exactly_as_line_by_line(
    data: bytes, cuts: list[int], limit: int
) -> None:
    chunks = split_at(data, cuts)
    assert decode_all(LineDecoder(limit), chunks) == decode_all(_LineByLine(limit), chunks)
