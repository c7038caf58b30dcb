"""Tests of lrprop/ingest/tfrecord.py, the TensorFlow-free TFRecord / SequenceExample reader.

Oracles: files written by the ``tfrecord`` PyPI package (its own protobuf serialisation and its
own masked CRC over the ``crc32c`` package), the published CRC-32C check value, protobuf wire
bytes assembled by hand from the encoding spec, and byte offsets computed from the record
framing (8-byte length, 4-byte CRC, data, 4-byte CRC).
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
from tfrecord.writer import TFRecordWriter

from lrprop.ingest.tfrecord import TFRecordError, masked_crc32c, parse_sequence_example, read_records

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# (context, sequence) pairs in the tfrecord package's (value, dtype) form, with what must come back.
RECORDS = [
    (
        {"name": (b"video-0", "byte"), "len": (3, "int"), "label": (-7, "int"), "score": ([0.5, -2.25], "float")},
        {
            "video": ([b"\xff\xd8jpeg0", b"", b"\x00\x01\x02"], "byte"),
            "frame_labels": ([[0], [-1], [INT64_MIN]], "int"),
            "weights": ([[1.0, 2.0], [], [3.5]], "float"),
        },
    ),
    (
        {"name": (b"", "byte"), "len": (INT64_MAX, "int"), "empty_ints": ([], "int"), "empty_bytes": ([], "byte")},
        {"frame_labels": ([[1, -2, 3], [], [INT64_MAX, INT64_MIN, -1]], "int"), "nothing": ([], "int")},
    ),
    (
        {"name": (bytes(range(256)), "byte"), "f": ([0.1, 1e30, -0.0], "float")},
        {"video": ([b"x" * 5000], "byte")},
    ),
]


def _expected(values, dtype) -> list:
    if not isinstance(values, (list, tuple)):
        values = [values]
    if dtype == "float":
        return [float(np.float32(v)) for v in values]  # stored as float32
    return list(values)


def _write(path, records=RECORDS) -> list[bytes]:
    """Write ``records`` with the tfrecord package; returns each record's serialised bytes."""
    writer = TFRecordWriter(str(path))
    for context, sequence in records:
        writer.write(context, sequence)
    writer.close()
    return [TFRecordWriter.serialize_tf_sequence_example(c, s) for c, s in records]


def _offsets(datas: list[bytes]) -> list[int]:
    out, offset = [], 0
    for data in datas:
        out.append(offset)
        offset += 8 + 4 + len(data) + 4
    return out


def test_read_records_returns_each_record_exactly(tmp_path):
    path = tmp_path / "a.tfrecord"
    datas = _write(path)
    with open(path, "rb") as handle:
        assert list(read_records(handle, str(path))) == datas
    assert path.stat().st_size == sum(16 + len(d) for d in datas)


def test_parse_sequence_example_returns_the_values_written(tmp_path):
    path = tmp_path / "a.tfrecord"
    _write(path)
    with open(path, "rb") as handle:
        examples = [parse_sequence_example(r) for r in read_records(handle, str(path))]
    assert len(examples) == len(RECORDS)
    for example, (context, sequence) in zip(examples, RECORDS, strict=True):
        assert example.context == {k: _expected(v, t) for k, (v, t) in context.items()}
        assert example.feature_lists == {k: [_expected(step, t) for step in v] for k, (v, t) in sequence.items()}
        for values in example.context.values():
            assert all(isinstance(v, (bytes, int, float)) for v in values)


def test_an_empty_file_has_no_records(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    with open(path, "rb") as handle:
        assert list(read_records(handle, str(path))) == []


def test_unpacked_int64_and_single_fixed32_float_encodings():
    """Wire bytes assembled by hand: int64 values not packed (wire type 0), a float as fixed32."""

    def varint(n: int) -> bytes:
        n &= (1 << 64) - 1
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            if n:
                out += bytes([byte | 0x80])
            else:
                return out + bytes([byte])

    def ld(number: int, payload: bytes) -> bytes:  # a length-delimited field
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    int64_list = varint(1 << 3 | 0) + varint(5) + varint(1 << 3 | 0) + varint(-3)
    float_list = varint(1 << 3 | 5) + struct.pack("<f", 2.5)
    feature_ints = ld(3, int64_list)
    feature_float = ld(2, float_list)
    context = ld(1, ld(1, b"ints") + ld(2, feature_ints)) + ld(1, ld(1, b"f") + ld(2, feature_float))
    feature_list = ld(1, feature_ints) + ld(1, feature_float)
    feature_lists = ld(1, ld(1, b"steps") + ld(2, feature_list))
    example = parse_sequence_example(ld(1, context) + ld(2, feature_lists))
    assert example.context == {"ints": [5, -3], "f": [2.5]}
    assert example.feature_lists == {"steps": [[5, -3], [2.5]]}


# ----------------------------------------------------------------------------- corruption


def _names_offset(error: Exception, path, offset: int) -> bool:
    """The message names ``path`` and, elsewhere in it, the number ``offset``."""
    message = str(error)
    return str(path) in message and re.search(rf"\b{offset}\b", message.replace(str(path), "")) is not None


def _read_all(path) -> tuple[list[bytes], TFRecordError | None]:
    got = []
    with open(path, "rb") as handle:
        try:
            for record in read_records(handle, str(path)):
                got.append(record)
        except TFRecordError as exc:
            return got, exc
    return got, None


def _corrupt(tmp_path, where: str) -> tuple:
    """A file of three records with the second damaged at ``where``; returns (path, datas, offset)."""
    path = tmp_path / f"bad-{where}.tfrecord"
    datas = _write(path)
    raw = bytearray(path.read_bytes())
    start = _offsets(datas)[1]
    if where == "length":
        raw[start + 1] ^= 0x01  # the length says 256 bytes more (or less) than there are
    elif where == "length_crc":
        raw[start + 9] ^= 0x40
    elif where == "data":
        raw[start + 12 + len(datas[1]) // 2] ^= 0x10
    elif where == "data_crc":
        raw[start + 12 + len(datas[1]) + 2] ^= 0x80
    path.write_bytes(bytes(raw))
    return path, datas, start


@pytest.mark.parametrize("where", ["length", "length_crc", "data", "data_crc"])
def test_a_flipped_byte_raises_naming_the_file_and_offset(tmp_path, where):
    path, datas, offset = _corrupt(tmp_path, where)
    got, error = _read_all(path)
    assert got == datas[:1]  # the record before the damage comes back whole
    assert error is not None
    assert _names_offset(error, path, offset)


@pytest.mark.parametrize("cut", ["in_header", "in_data", "in_footer"])
def test_a_truncated_file_raises_naming_the_file_and_offset(tmp_path, cut):
    path = tmp_path / "short.tfrecord"
    datas = _write(path)
    start = _offsets(datas)[2]
    keep = {"in_header": start + 5, "in_data": start + 12 + len(datas[2]) // 2, "in_footer": start + 12 + len(datas[2]) + 3}[cut]
    path.write_bytes(path.read_bytes()[:keep])
    got, error = _read_all(path)
    assert got == datas[:2]
    assert error is not None
    assert _names_offset(error, path, start)


def test_a_corrupt_first_record_reports_offset_zero(tmp_path):
    path = tmp_path / "first.tfrecord"
    datas = _write(path)
    raw = bytearray(path.read_bytes())
    raw[12] ^= 0xFF
    path.write_bytes(bytes(raw))
    got, error = _read_all(path)
    assert got == [] and error is not None
    assert _names_offset(error, path, 0)
    assert datas  # the file did hold records


def test_the_error_names_the_file_given_for_an_open_handle():
    with pytest.raises(TFRecordError, match="s3://bucket/pouring_train.tfrecord"):
        list(read_records(io.BytesIO(b"\x01\x02\x03"), "s3://bucket/pouring_train.tfrecord"))


# ----------------------------------------------------------------------------- CRC


@pytest.mark.parametrize(
    "data",
    [b"", b"a", b"123456789", struct.pack("<Q", 1234), bytes(range(256)) * 7, np.random.default_rng(0).bytes(4097)],
)
def test_masked_crc32c_matches_the_tfrecord_package(data):
    (expected,) = struct.unpack("<I", TFRecordWriter.masked_crc(data))
    assert masked_crc32c(data) == expected


def test_masked_crc32c_of_the_crc32c_check_value():
    crc = 0xE3069283  # CRC-32C of b"123456789" (RFC 3720, B.4)
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
