"""Reading TFRecord files of ``tf.train.SequenceExample`` without TensorFlow.

A TFRecord file is a sequence of records:

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

(little endian; masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2³²). Every CRC is
checked: a corrupt record is an error naming the file and the record's byte offset.

The records are protocol buffers; the few messages needed here are decoded from the wire format
directly (field numbers from tensorflow/core/example/{example,feature}.proto):

    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                              Int64List int64_list = 3; } }
    XList           { repeated X value = 1; }   (floats and int64s packed or not)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import google_crc32c

__all__ = ["TFRecordError", "SequenceExample", "read_records", "parse_sequence_example", "masked_crc32c"]

_MASK_DELTA = 0xA282EAD8


class TFRecordError(ValueError):
    """A TFRecord file or a record in it that cannot be read; the message names the file."""


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(handle: BinaryIO, name: str = "<tfrecord>") -> Iterator[bytes]:
    """Yield the data of each record of an open TFRecord file, checking both CRCs."""
    offset = 0
    while True:
        header = handle.read(12)
        if not header:
            return
        if len(header) < 12:
            raise TFRecordError(f"{name}: truncated record header at byte {offset}")
        (length,) = struct.unpack("<Q", header[:8])
        (length_crc,) = struct.unpack("<I", header[8:])
        if masked_crc32c(header[:8]) != length_crc:
            raise TFRecordError(f"{name}: bad length CRC of the record at byte {offset}")
        data = handle.read(length)
        footer = handle.read(4)
        if len(data) < length or len(footer) < 4:
            raise TFRecordError(f"{name}: truncated record at byte {offset}")
        if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise TFRecordError(f"{name}: bad data CRC of the record at byte {offset}")
        yield data
        offset += 16 + length


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of each field of a message; LEN values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
            if pos > len(buf):
                raise ValueError("truncated length-delimited field")
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes) -> list:
    """A Feature's values: a list of bytes, floats or ints."""
    for number, _, payload in _fields(buf):
        values: list = []
        for _, wire, value in _fields(payload):
            if number == 1:
                values.append(bytes(value))
            elif number == 2:  # packed (LEN) or a single fixed32: bytes either way
                values.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif number == 3:
                if wire == 2:  # packed varints
                    pos = 0
                    while pos < len(value):
                        v, pos = _varint(value, pos)
                        values.append(_signed64(v))
                else:
                    values.append(_signed64(value))
        return values
    return []


def _map_entries(buf: bytes) -> Iterator[tuple[str, bytes]]:
    """The (key, value bytes) entries of a map<string, message> field 1 of ``buf``."""
    for number, _, entry in _fields(buf):
        if number != 1:
            continue
        key, value = "", b""
        for n, _, v in _fields(entry):
            if n == 1:
                key = bytes(v).decode()
            elif n == 2:
                value = bytes(v)
        yield key, value


@dataclass
class SequenceExample:
    """A decoded SequenceExample: context features and per-step feature lists."""

    context: dict[str, list] = field(default_factory=dict)
    feature_lists: dict[str, list[list]] = field(default_factory=dict)


def parse_sequence_example(data: bytes) -> SequenceExample:
    """Decode the serialised bytes of a ``tf.train.SequenceExample``."""
    example = SequenceExample()
    for number, _, payload in _fields(data):
        if number == 1:
            for key, value in _map_entries(payload):
                example.context[key] = _feature(value)
        elif number == 2:
            for key, value in _map_entries(payload):
                example.feature_lists[key] = [_feature(f) for n, _, f in _fields(value) if n == 1]
    return example
