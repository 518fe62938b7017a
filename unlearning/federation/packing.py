"""One model, one buffer: a state dict (``dict[str, Tensor]``) packed into a single byte string and back.

Flower sends every array of an ArrayRecord as its own object, and a Deployment Engine node downloads each
object with its own HTTP request (SuperLink -> SuperNode -> ClientApp, and back for the reply): a message
carrying a model of many tensors, or several models (``arrays``, ``anchor``, ``fisher``, ``ball-center``),
cost seconds in requests alone. :mod:`unlearning.federation.protocol` therefore puts each model on the wire
as ONE array in this format (stype :data:`STYPE`), which Flower splits into 5 MiB chunks only when it is
larger than that.

Layout (little-endian)::

    MAGIC (8 bytes) | header length H (uint64) | header (H bytes, UTF-8 JSON) | zero padding | payload

The header is ``{"tensors": [[name, dtype, shape, offset, nbytes], ...]}`` in the state dict's order; each
tensor's raw bytes (C order, the machine's little-endian layout) start at ``offset`` bytes into the payload,
which starts at the first multiple of :data:`ALIGN` after the header; each offset is a multiple of
:data:`ALIGN`. Unpacking checks everything it reads (magic, header, dtype names, shapes, sizes, bounds,
duplicate names) and raises :class:`PackError` on anything else: the bytes come from another machine.
The bytes of every tensor are kept exactly (NaN payloads, negative zeros), so a model survives the wire bit
for bit on every runtime.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

MAGIC = b"CMNSPK01"
STYPE = "commons.packed/1"
"""Flower ``Array.stype`` of a packed state dict (Flower's own arrays are ``numpy.ndarray``)."""
ALIGN = 64
MAX_HEADER_BYTES = 64 * 1024 * 1024

DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
"""The dtypes a packed state dict may hold, by the name the header gives them."""
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_LENGTH = struct.Struct("<Q")


class PackError(ValueError):
    """Bytes that are not a packed state dict, or a state dict that cannot be packed."""


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pack(tensors: Mapping[str, Tensor]) -> bytes:
    """``tensors`` (names in order, each tensor's dtype, shape and bytes) as one byte string."""
    if sys.byteorder != "little":
        raise PackError("packing needs a little-endian machine")
    entries: list[list[object]] = []
    flat: list[tuple[int, int, Tensor]] = []  # (offset, nbytes, the tensor's bytes)
    offset = 0
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise PackError(f"tensor names must be strings, got {type(name).__name__}")
        if not isinstance(value, Tensor):
            raise PackError(f"{name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise PackError(f"{name!r} has dtype {t.dtype}, which cannot be packed")
        nbytes = t.numel() * t.element_size()
        offset = _aligned(offset)
        entries.append([name, _NAMES[t.dtype], list(t.shape), offset, nbytes])
        flat.append((offset, nbytes, t.reshape(-1).view(torch.uint8)))
        offset += nbytes
    header = json.dumps({"tensors": entries}, separators=(",", ":")).encode()
    start = _aligned(len(MAGIC) + _LENGTH.size + len(header))
    out = bytearray(start + offset)
    out[: len(MAGIC)] = MAGIC
    _LENGTH.pack_into(out, len(MAGIC), len(header))
    out[len(MAGIC) + _LENGTH.size : len(MAGIC) + _LENGTH.size + len(header)] = header
    view = np.frombuffer(out, dtype=np.uint8)
    for at, nbytes, t in flat:
        if nbytes:
            view[start + at : start + at + nbytes] = t.numpy()
    return bytes(out)


def _entry(raw: object, payload: int) -> tuple[str, torch.dtype, tuple[int, ...], int, int]:
    if not (isinstance(raw, list) and len(raw) == 5):
        raise PackError("a tensor entry of the header is not [name, dtype, shape, offset, nbytes]")
    name, dtype_name, shape, offset, nbytes = raw
    if not isinstance(name, str):
        raise PackError("a tensor name in the header is not a string")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise PackError(f"tensor {name!r} has an unknown dtype {dtype_name!r}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise PackError(f"tensor {name!r} has a bad shape {shape!r}")
    if not (type(offset) is int and type(nbytes) is int and offset >= 0 and offset % ALIGN == 0):
        raise PackError(f"tensor {name!r} has a bad offset or size")
    dtype = DTYPES[dtype_name]
    if nbytes != math.prod(shape) * torch.empty((), dtype=dtype).element_size():
        raise PackError(f"tensor {name!r}: {nbytes} bytes do not hold a {dtype_name} tensor of shape {shape}")
    if offset + nbytes > payload:
        raise PackError(f"tensor {name!r} lies outside the packed bytes")
    return name, dtype, tuple(shape), offset, nbytes


def unpack(data: bytes) -> dict[str, Tensor]:
    """The state dict that :func:`pack` made ``data`` from (each tensor owns its memory)."""
    if sys.byteorder != "little":
        raise PackError("unpacking needs a little-endian machine")
    head = len(MAGIC) + _LENGTH.size
    if len(data) < head or bytes(data[: len(MAGIC)]) != MAGIC:
        raise PackError("not a packed state dict (wrong magic)")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > MAX_HEADER_BYTES or head + length > len(data):
        raise PackError("the packed header is cut off")
    try:
        header = json.loads(bytes(data[head : head + length]))
    except ValueError as exc:
        raise PackError(f"the packed header is not JSON: {exc}") from None
    if not (isinstance(header, dict) and isinstance(header.get("tensors"), list)):
        raise PackError("the packed header has no tensor list")
    start = _aligned(head + length)
    payload = max(0, len(data) - start)
    out: dict[str, Tensor] = {}
    for raw in header["tensors"]:
        name, dtype, shape, offset, nbytes = _entry(raw, payload)
        if name in out:
            raise PackError(f"tensor {name!r} appears twice in the packed header")
        if nbytes == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        raw_bytes = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start + offset).copy()
        out[name] = torch.from_numpy(raw_bytes).view(dtype).reshape(shape)
    return out
