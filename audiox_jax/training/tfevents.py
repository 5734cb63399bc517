"""A minimal TensorBoard scalar writer: the tfevents file format without TensorFlow.

A tfevents file is a sequence of TFRecords, each ``u64 length | u32 masked_crc(length) |
data | u32 masked_crc(data)`` (little-endian; CRC-32C, masked as
``((c >> 15) | (c << 17)) + 0xa282ead8``), each data an ``Event`` protobuf. The first event
carries ``file_version = "brain.Event:2"``; each scalar is ``Event{wall_time (1, double),
step (2, int64), summary (5){value (1){tag (1, string), simple_value (2, float)}}}``.
Only these fields are written, encoded by hand below.
"""

from __future__ import annotations

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; crc32c(b"123456789") == 0xE3069283."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def event(step: int, wall_time: float, *, scalars: dict[str, float] | None = None,
          file_version: str | None = None) -> bytes:
    """One serialized Event with ``scalars`` (tag -> value) or a ``file_version``."""
    out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode())
    if scalars:
        values = b"".join(_field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", float(v)))
                          for tag, v in scalars.items())
        out += _field(5, values)
    return out


def record(data: bytes) -> bytes:
    """TFRecord framing of ``data``."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


class ScalarWriter:
    """Appends scalar events to ``logdir/events.out.tfevents.<time>.<host>`` (a new file per writer)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}")
        self._f = open(self.path, "ab")
        self._f.write(record(event(0, time.time(), file_version="brain.Event:2")))
        self._f.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._f.write(record(event(step, time.time(), scalars=values)))
        self._f.flush()

    def close(self) -> None:
        self._f.close()
