"""Wire format between the ROS side and the SAM 3D worker: explicit, versioned, nothing executes on load.

A message is a list of byte frames (one ZeroMQ multipart message):
- frame 0, the header: a msgpack map
  `{"proto": "sam3d-ros", "v": 1, "type": str, "id": str, "meta": map, "arrays": [[name, dtype, shape], ...]}`;
  `meta` holds only msgpack's plain types (nil, bool, int, float, str, bytes, list, map); no extension types.
- frames 1..n: the raw C-order bytes of each array in the order of `arrays`; `dtype` is an explicit numpy type
  string from a short allow-list (little-endian where it matters), `shape` a list of at most 4 sizes, and the frame
  must hold exactly `prod(shape) * itemsize` bytes.
No pickle, no object arrays: decoding parses msgpack (bounded) and wraps buffers with `numpy.frombuffer`. Anything
that does not fit raises `WireError` with a one-line message. Decoded arrays are read-only views on the frames.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

PROTOCOL = "sam3d-ros"
VERSION = 1
#: Message types: requests (ping, reconstruct) and replies (pong, result, error).
TYPES = frozenset({"ping", "pong", "reconstruct", "result", "error"})
#: dtype strings accepted on the wire.
DTYPES = frozenset({"|b1", "|u1", "<u2", "<i4", "<u4", "<i8", "<f2", "<f4", "<f8"})
MAX_ARRAYS = 32
MAX_NDIM = 4
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 30
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HEADER_KEYS = {"proto", "v", "type", "id", "meta", "arrays"}


class WireError(ValueError):
    """Bytes that are not a valid message of this protocol; the message says why in one line."""


@dataclass
class WireMessage:
    """One decoded message: its type, the request it belongs to, plain metadata and named arrays."""

    type: str
    request_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _dtype_string(array: np.ndarray) -> str:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = dtype.str
    if code not in DTYPES:
        raise WireError(f"dtype {array.dtype} cannot go on the wire (allowed: {', '.join(sorted(DTYPES))})")
    return code


def encode(message: WireMessage) -> list[bytes | memoryview]:
    """Frames of `message`; arrays are sent without copying when already C-contiguous little-endian."""
    if message.type not in TYPES:
        raise WireError(f"unknown message type {message.type!r}")
    if len(message.arrays) > MAX_ARRAYS:
        raise WireError(f"{len(message.arrays)} arrays, at most {MAX_ARRAYS}")
    specs, buffers = [], []
    for name, array in message.arrays.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise WireError(f"array name {name!r} is not an identifier of at most 64 characters")
        array = np.asarray(array)
        code = _dtype_string(array)
        if array.ndim > MAX_NDIM:
            raise WireError(f"array {name} has {array.ndim} dimensions, at most {MAX_NDIM}")
        array = array.astype(np.dtype(code), order="C", copy=False)  # (ascontiguousarray would make 0-d 1-d)
        specs.append([name, code, list(array.shape)])
        buffers.append(memoryview(array).cast("B") if array.size else b"")
    try:
        header = msgpack.packb(
            {"proto": PROTOCOL, "v": VERSION, "type": message.type, "id": str(message.request_id),
             "meta": message.meta, "arrays": specs},
            use_bin_type=True,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"metadata cannot be encoded: {exc}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise WireError(f"header is {len(header)} bytes, at most {MAX_HEADER_BYTES}")
    return [header, *buffers]


def _no_ext(code: int, data: bytes) -> Any:
    raise WireError(f"msgpack extension type {code} is not allowed")


def _as_buffer(frame: Any) -> memoryview:
    """A byte view of a frame: bytes, bytearray, memoryview or a zmq.Frame."""
    frame = getattr(frame, "buffer", frame)
    try:
        view = memoryview(frame)
    except TypeError:
        raise WireError(f"frame of type {type(frame).__name__} is not bytes") from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode(frames: Sequence[Any]) -> WireMessage:
    """Parse and validate the frames of one message; raises WireError on anything unexpected."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise WireError("empty message (no header frame)")
    if len(frames) > 1 + MAX_ARRAYS:
        raise WireError(f"message has {len(frames)} frames, at most {1 + MAX_ARRAYS}")
    head = _as_buffer(frames[0])
    if len(head) > MAX_HEADER_BYTES:
        raise WireError(f"header is {len(head)} bytes, at most {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            head, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext,
            max_str_len=MAX_HEADER_BYTES, max_bin_len=MAX_HEADER_BYTES,
            max_array_len=1 << 16, max_map_len=1 << 12,
        )
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise WireError(f"header is not a msgpack map of this protocol ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("proto") != PROTOCOL:
        raise WireError(f"not a {PROTOCOL} message (bad header)")
    if header.get("v") != VERSION:
        raise WireError(f"peer speaks wire version {_one_line(repr(header.get('v')), 20)}, this side {VERSION}: "
                        "install the same sam3d_ros version on both sides")
    if set(header) != _HEADER_KEYS:
        raise WireError(f"header keys {sorted(map(str, header))} are not {sorted(_HEADER_KEYS)}")
    kind, request_id, meta, specs = header["type"], header["id"], header["meta"], header["arrays"]
    if kind not in TYPES:
        raise WireError(f"unknown message type {_one_line(repr(kind), 40)}")
    if not isinstance(request_id, str) or len(request_id) > 128:
        raise WireError("request id must be a string of at most 128 characters")
    if not isinstance(meta, dict):
        raise WireError("meta must be a map")
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        n = len(specs) if isinstance(specs, list) else "no"
        raise WireError(f"header announces {n} arrays but {len(frames) - 1} data frames came")
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:]):
        name, array = _array(spec, frame)
        if name in arrays:
            raise WireError(f"array {name} appears twice")
        arrays[name] = array
    return WireMessage(kind, request_id, meta, arrays)


def _array(spec: Any, frame: Any) -> tuple[str, np.ndarray]:
    if not (isinstance(spec, list) and len(spec) == 3):
        raise WireError("array spec must be [name, dtype, shape]")
    name, code, shape = spec
    if not isinstance(name, str) or not _NAME.match(name):
        raise WireError(f"bad array name {_one_line(repr(name), 40)}")
    if code not in DTYPES:
        raise WireError(f"array {name}: dtype {_one_line(repr(code), 20)} not allowed")
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < (1 << 31) for n in shape)):
        raise WireError(f"array {name}: shape must be a list of at most {MAX_NDIM} sizes >= 0")
    dtype = np.dtype(code)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise WireError(f"array {name}: {nbytes} bytes, at most {MAX_ARRAY_BYTES}")
    data = _as_buffer(frame)
    if len(data) != nbytes:
        raise WireError(f"array {name}: {len(data)} bytes for shape {shape} {code} ({nbytes} expected)")
    array = np.frombuffer(data, dtype=dtype).reshape(shape) if nbytes else np.zeros(shape, dtype)
    array.flags.writeable = False
    if dtype == np.bool_ and nbytes and array.view(np.uint8).max() > 1:
        raise WireError(f"array {name}: bool bytes other than 0 and 1")
    return name, array


def error_message(request_id: str, text: str, code: str = "error") -> WireMessage:
    """An error reply: `meta = {"code": code, "message": one line}`."""
    return WireMessage("error", request_id, {"code": code, "message": _one_line(text)})
