"""The MindSpore checkpoint file (.ckpt), read and written without MindSpore or the protobuf package.

A .ckpt is one protobuf message (MindSpore's checkpoint.proto, proto2):

    Checkpoint  { repeated Value value = 1; }
    Value       { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3; }

written as a run of small messages, one Value each, so the file is a sequence of (field 1, length, Value).
MindSpore 2.x adds two things this reader knows: a parameter over 512 MiB is split into several consecutive
Values with the same tag (the contents concatenate), and `save_checkpoint(crc_check=True)` appends
b"crc_num" + a 10-byte big-endian CRC-32 of everything before it. Encrypted checkpoints (enc_key) and
MapParameters cannot be read without MindSpore; they get a message saying so.

Why our own reader: protobuf's parser wants the whole message (the whole file) in memory, and a pre-training
checkpoint is two thirds optimizer moments. `index()` reads only tags, dims and types, and records where each
tensor's bytes are; the bytes of tensors nobody asks for (optimizer state) are seeked past, never read.
"""

from __future__ import annotations

import binascii
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from train_entry.data import DataError

# MindSpore's tensor_type strings -> numpy dtypes (BFloat16 has none in numpy: read as its raw uint16 bits)
DTYPES: dict[str, np.dtype] = {
    "Float32": np.dtype("<f4"),
    "Float16": np.dtype("<f2"),
    "Float64": np.dtype("<f8"),
    "BFloat16": np.dtype("<u2"),
    "Int8": np.dtype("i1"),
    "UInt8": np.dtype("u1"),
    "Int16": np.dtype("<i2"),
    "UInt16": np.dtype("<u2"),
    "Int32": np.dtype("<i4"),
    "UInt32": np.dtype("<u4"),
    "Int64": np.dtype("<i8"),
    "UInt64": np.dtype("<u8"),
    "Bool": np.dtype("?"),
}
NUMPY_TO_MINDSPORE = {np.dtype(v): k for k, v in DTYPES.items() if k not in ("BFloat16", "UInt16")}
NUMPY_TO_MINDSPORE[np.dtype("<u2")] = "UInt16"
CRC_MARK = b"crc_num"
CRC_TRAILER = len(CRC_MARK) + 10
READ_CHUNK = 8 << 20  # bytes copied per read when streaming a tensor
# Bounds checked before anything is allocated for a field, so a crafted file costs no more memory than its
# largest tensor. Real checkpoints sit far inside them: MindSpore names are dotted paths of a few hundred bytes,
# tensor types are words like "Float32", tensors have at most 8 dimensions, and BERT-large with Adam state holds
# about 1,200 parameters.
MAX_NAME_BYTES = 4096
MAX_TYPE_BYTES = 32
MAX_DIMS = 32
MAX_ENTRIES = 100_000
INT64_MAX = (1 << 63) - 1


class CheckpointError(DataError):
    """The file is not a MindSpore checkpoint this reader understands; the message says what to do."""


@dataclass(slots=True)  # slots: an index of MAX_ENTRIES entries stays small (tens of MB)
class Entry:
    """One parameter: its name, shape, MindSpore type and where its bytes lie (one span per slice)."""

    name: str
    dims: tuple[int, ...]
    tensor_type: str
    spans: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) in the file

    @property
    def nbytes(self) -> int:
        return sum(length for _, length in self.spans)

    @property
    def dtype(self) -> np.dtype:
        return DTYPES[self.tensor_type]


class _Reader:
    """Bounded protobuf wire reading over a seekable file: varints, keys, length-delimited fields."""

    def __init__(self, f: BinaryIO, path: Path, end: int) -> None:
        self.f, self.path, self.end = f, path, end

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path}: not a readable MindSpore checkpoint ({what} at byte {self.f.tell()}); "
            "the file is truncated or corrupted: copy it again from where it was saved"
        )

    def varint(self, limit: int) -> int:
        result = shift = 0
        while True:
            if self.f.tell() >= limit:
                raise self.fail("field runs past its end")
            byte = self.f.read(1)
            if not byte:
                raise self.fail("unexpected end of file")
            result |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                if result >> 64:
                    raise self.fail("malformed number")
                return result
            shift += 7
            if shift > 63:
                raise self.fail("malformed number")

    def length(self, limit: int) -> int:
        size = self.varint(limit)
        if self.f.tell() + size > limit:
            raise self.fail("field runs past its end")
        return size

    def text(self, limit: int, bound: int, what: str) -> bytes:
        """A length-delimited field of at most `bound` bytes, refused before it is read when longer."""
        size = self.length(limit)
        if size > bound:
            raise CheckpointError(
                f"{self.path}: {what} of {size} bytes at byte {self.f.tell()} (at most {bound} make sense); "
                "the file is damaged or not a MindSpore checkpoint"
            )
        return self.f.read(size)

    def skip(self, wire_type: int, limit: int) -> None:
        if wire_type == 0:
            self.varint(limit)
        elif wire_type in (1, 5):
            self.f.seek(8 if wire_type == 1 else 4, os.SEEK_CUR)
        elif wire_type == 2:
            self.f.seek(self.length(limit), os.SEEK_CUR)
        else:
            raise self.fail(f"unknown field type {wire_type}")
        if self.f.tell() > limit:
            raise self.fail("field runs past its end")


def _data_end(f: BinaryIO, path: Path, size: int) -> int:
    """Where the protobuf ends: before the CRC trailer when MindSpore wrote one (checked when verify)."""
    if size >= CRC_TRAILER:
        f.seek(size - CRC_TRAILER)
        if f.read(len(CRC_MARK)) == CRC_MARK:
            return size - CRC_TRAILER
    return size


def verify_crc(path: Path) -> bool | None:
    """True/False when the file carries MindSpore's CRC trailer (reads the whole file once); None without one."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        end = _data_end(f, path, size)
        if end == size:
            return None
        expected = int.from_bytes(f.read(10), "big")
        f.seek(0)
        crc, left = 0, end
        while left:
            chunk = f.read(min(READ_CHUNK, left))
            if not chunk:
                return False
            crc, left = binascii.crc32(chunk, crc), left - len(chunk)
        return crc == expected


def _sniff(f: BinaryIO, path: Path, size: int) -> None:
    """Clear messages for files that are something else than an unencrypted .ckpt."""
    head = f.read(16)
    f.seek(0)
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty; copy the checkpoint again")
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        raise CheckpointError(
            f"{path}: this is a safetensors file (MindSpore save_checkpoint(format='safetensors')), not a .ckpt; "
            "save it with format='ckpt', or load it with the safetensors package"
        )
    if head[:1] != b"\x0a":
        raise CheckpointError(
            f"{path}: not a MindSpore .ckpt (it does not start with a checkpoint entry); if it was saved with "
            "enc_key it is encrypted: decrypt it with MindSpore (load_checkpoint(dec_key=...) then "
            "save_checkpoint without enc_key) first"
        )


def index(path: Path) -> list[Entry]:
    """Every parameter's name, shape, type and byte spans, in file order; tensor bytes are seeked past."""
    path = Path(path)
    entries: list[Entry] = []
    seen: set[str] = set()
    slices = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _sniff(f, path, size)
        end = _data_end(f, path, size)
        f.seek(0)
        r = _Reader(f, path, end)
        while f.tell() < end:
            key = r.varint(end)
            if key >> 3 != 1 or key & 7 != 2:
                raise r.fail(f"unexpected field {key >> 3} (wire type {key & 7}) between entries")
            size = r.length(end)
            value_end = f.tell() + size
            entry = _value(r, value_end)
            if entry is None:
                continue
            slices += 1
            if slices > MAX_ENTRIES:
                raise CheckpointError(
                    f"{path}: more than {MAX_ENTRIES} entries (the last read: {entry.name}); no model-zoo "
                    "checkpoint holds that many: the file is damaged or not a MindSpore checkpoint"
                )
            last = entries[-1] if entries else None
            if last is not None and last.name == entry.name:  # a slice of a parameter over 512 MiB
                if (last.dims, last.tensor_type) != (entry.dims, entry.tensor_type):
                    raise r.fail(f"slices of {entry.name} disagree on shape or type")
                last.spans += entry.spans
            elif entry.name in seen:
                raise CheckpointError(
                    f"{path}: parameter {entry.name} appears twice, apart; which one is meant is unknowable: "
                    "save the checkpoint again"
                )
            else:
                seen.add(entry.name)
                entries.append(entry)
    for entry in entries:
        _check_size(path, entry)
    return entries


def _value(r: _Reader, value_end: int) -> Entry | None:
    f = r.f
    tag: str | None = None
    entry: Entry | None = None
    while f.tell() < value_end:
        key = r.varint(value_end)
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 2:
            raw = r.text(value_end, MAX_NAME_BYTES, "a parameter name")
            try:
                tag = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise r.fail("a parameter name that is not text") from exc
            if not tag.isprintable():  # never in MindSpore's dotted names; terminal escapes must not reach a screen
                raise r.fail(f"a parameter name with control characters ({ascii(tag)[:200]})")
        elif number == 2 and wire == 2:
            size = r.length(value_end)
            entry = _tensor(r, f.tell() + size, tag or "")
        elif number == 3 and wire == 2:
            raise CheckpointError(
                f"{r.path}: parameter {tag or '?'} is a MindSpore MapParameter (a hash-table embedding); "
                "BERT checkpoints have none and this reader cannot read it"
            )
        else:
            r.skip(wire, value_end)
    if f.tell() != value_end:
        raise r.fail("an entry runs past its end")
    if tag is None:
        raise r.fail("an entry without a name")
    if entry is None:
        raise r.fail(f"entry {tag} without a tensor")
    entry.name = tag
    return entry


def _tensor(r: _Reader, tensor_end: int, tag: str) -> Entry:
    f = r.f
    dims: list[int] = []
    tensor_type: str | None = None
    span: tuple[int, int] | None = None
    while f.tell() < tensor_end:
        key = r.varint(tensor_end)
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 0:
            dims.append(_dim(r, r.varint(tensor_end), tag, len(dims)))
        elif number == 1 and wire == 2:  # packed dims (not what MindSpore writes, but valid protobuf)
            size = r.length(tensor_end)
            packed_end = f.tell() + size
            while f.tell() < packed_end:
                dims.append(_dim(r, r.varint(packed_end), tag, len(dims)))
        elif number == 2 and wire == 2:
            tensor_type = r.text(tensor_end, MAX_TYPE_BYTES, f"the tensor type of {tag or '?'}").decode(
                "ascii", "replace"
            )
        elif number == 3 and wire == 2:
            length = r.length(tensor_end)
            span = (f.tell(), length)
            f.seek(length, os.SEEK_CUR)  # the point: contents are not read here
        else:
            r.skip(wire, tensor_end)
    if f.tell() != tensor_end:
        raise r.fail(f"tensor {tag} runs past its end")
    if tensor_type is None or span is None:
        raise r.fail(f"tensor {tag} without a type or contents")
    if tensor_type not in DTYPES and tensor_type != "str":  # "str": append_dict strings, indexed, never converted
        raise CheckpointError(
            f"{r.path}: parameter {tag} has tensor type {tensor_type!r}, which this reader does not know "
            f"(it reads {', '.join(DTYPES)})"
        )
    # MindSpore writes dims [0] for some scalars; a scalar has no dims
    return Entry(tag, () if dims == [0] else tuple(dims), tensor_type, [span])


def _dim(r: _Reader, value: int, tag: str, count: int) -> int:
    """One dimension, as MindSpore's int64: refused when negative, when there are too many, or when larger than
    the file (no tensor of this file can have more elements along one axis than the file has bytes, so a
    crafted 10**18-row "vocabulary" is refused here, before any config is derived from it)."""
    if count >= MAX_DIMS:
        raise CheckpointError(
            f"{r.path}: parameter {tag or '?'} has more than {MAX_DIMS} dimensions; the file is damaged"
        )
    if value > INT64_MAX:
        value -= 1 << 64
    if value < 0 or value > r.end:
        raise CheckpointError(
            f"{r.path}: parameter {tag or '?'} has dimension {value}, impossible in a file of {r.end} bytes; "
            "the file is damaged or crafted: copy it again from where it was saved"
        )
    return value


def _check_size(path: Path, entry: Entry) -> None:
    """Shape x type against the bytes present, in exact integers (numpy's int64 product wraps around: dims
    [2**62, 16] of Float32 "need" 0 bytes there)."""
    if entry.tensor_type == "str":
        return
    expected = math.prod(entry.dims) * entry.dtype.itemsize
    if entry.nbytes != expected:
        raise CheckpointError(
            f"{path}: parameter {entry.name} holds {entry.nbytes} bytes but its shape {list(entry.dims)} "
            f"({entry.tensor_type}) needs {expected}; the file is corrupted: copy it again"
        )


def iter_chunks(f: BinaryIO, entry: Entry, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """The tensor's raw bytes, a chunk at a time (whole elements per chunk), slices in order."""
    itemsize = entry.dtype.itemsize
    chunk -= chunk % itemsize
    carry = b""
    for offset, length in entry.spans:
        if offset < 0 or length < 0:  # never from index(); a guard for hand-made Entries
            raise CheckpointError(f"parameter {entry.name}: a negative offset or length ({offset}, {length})")
        f.seek(offset)
        left = length
        while left:
            data = f.read(min(chunk, left))
            if not data:
                raise CheckpointError(
                    f"{getattr(f, 'name', 'checkpoint')}: ends inside parameter {entry.name} "
                    "(the file was cut short or replaced while it was read): copy it again"
                )
            left -= len(data)
            data = carry + data
            cut = len(data) - len(data) % itemsize
            carry = data[cut:]
            if cut:
                yield data[:cut]
    if carry:
        raise CheckpointError(f"parameter {entry.name} does not end on a whole element")


def read_array(f: BinaryIO, entry: Entry) -> np.ndarray:
    """One tensor as a numpy array (BFloat16 as uint16 bits); for tests and small tensors."""
    data = b"".join(iter_chunks(f, entry))
    return np.frombuffer(data, dtype=entry.dtype).reshape(entry.dims)


# --- writing -------------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def write_entry(out: BinaryIO, name: str, dims: Iterable[int], tensor_type: str, content_size: int) -> None:
    """Write one Value's framing up to its tensor_content; the caller then writes exactly content_size bytes.

    Field order and encoding follow what MindSpore's own protobuf serializer produces (tag, then tensor:
    unpacked dims, type, content), so `mindspore.load_checkpoint` reads the file.
    """
    if tensor_type not in DTYPES:
        raise ValueError(f"unknown MindSpore tensor type {tensor_type}")
    dims_bytes = b"".join(_varint(1 << 3) + _varint(d) for d in dims)
    tensor_head = dims_bytes + _field(2, tensor_type.encode()) + _varint(3 << 3 | 2) + _varint(content_size)
    tensor_len = len(tensor_head) + content_size
    value_head = _field(1, name.encode("utf-8")) + _varint(2 << 3 | 2) + _varint(tensor_len)
    value_len = len(value_head) + tensor_len
    out.write(_varint(1 << 3 | 2) + _varint(value_len) + value_head + tensor_head)


def write_array(out: BinaryIO, name: str, array: np.ndarray, tensor_type: str | None = None) -> None:
    """One parameter from a numpy array (tensor_type overrides, e.g. BFloat16 for uint16 bits)."""
    array = np.ascontiguousarray(array)
    if tensor_type is None:
        tensor_type = NUMPY_TO_MINDSPORE.get(array.dtype.newbyteorder("<"))
        if tensor_type is None:
            raise ValueError(f"{name}: numpy type {array.dtype} has no MindSpore tensor type")
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    write_entry(out, name, array.shape, tensor_type, len(data))
    out.write(data)
