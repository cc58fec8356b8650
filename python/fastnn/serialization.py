"""fastnn.save / fastnn.load: a safe, documented checkpoint format (no pickle, no code).

File layout (all integers little-endian)::

    offset 0   8 bytes   magic  b"FASTNNCK"
    offset 8   4 bytes   format version (uint32, currently 1)
    offset 12  8 bytes   header length H (uint64)
    offset 20  H bytes   header: UTF-8 JSON (below)
    then       zero padding to a multiple of 64
    then       the data section: every tensor's raw bytes (C order), each at a 64-aligned
               offset relative to the start of the section

    header = {"tree": <value>, "tensors": [{"dtype": "float32", "shape": [..], "offset": o,
              "nbytes": n}, ...], "data_nbytes": N, "crc32": <zlib.crc32 of the data section>}

    <value> is JSON null / bool / number / string, or an object with exactly one key:
      {"t": i}        tensor number i of "tensors"
      {"l": [...]}    list            {"u": [...]}  tuple
      {"d": [[k, v], ...]}  dict with str or int keys (int keys survive the round trip,
                            as in an optimizer's state); floats may be NaN/Infinity.

Saving is atomic: the bytes go to a temporary file in the target directory, which is
flushed and fsync'ed, then os.replace()d over the target, then the directory is fsync'ed.
A save killed at any point leaves either the old file or the new one, never a torn file.
Loading checks magic, version, sizes and the CRC: a truncated, corrupted or foreign file
raises ValueError naming the problem.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib

import numpy as np

from . import _C

Tensor = _C.Tensor

MAGIC = b"FASTNNCK"
VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")

__all__ = ["save", "load"]

_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int32": np.int32,
              "int64": np.int64, "uint8": np.uint8, "bool": np.bool_}


def _dtype_name(t):
    return t.dtype.name


def _encode(obj, tensors, path="root"):
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, (Tensor, np.ndarray)):
        tensors.append(obj)
        return {"t": len(tensors) - 1}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: {path}: dict keys must be str or int, got {type(k).__name__}")
            items.append([k, _encode(v, tensors, f"{path}[{k!r}]")])
        return {"d": items}
    if isinstance(obj, list):
        return {"l": [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, tuple):
        return {"u": [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(obj)]}
    raise TypeError(f"save: {path}: cannot save an object of type {type(obj).__name__} (supported: tensors, "
                    "NumPy arrays, numbers, strings, None, and dicts / lists / tuples of them)")


def _raw(arr):
    """The bytes of a C-contiguous array as a 1-D uint8 view (works for 0-d and empty arrays)."""
    return arr.reshape(-1).view(np.uint8)


def _host_array(t):
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t), str(t.dtype) if t.dtype != np.bool_ else "bool"
    name = _dtype_name(t)
    if t.is_cuda:
        t = t.cpu()
    if name == "bfloat16":  # no NumPy dtype: stored as its float32 value (exact), restored on load
        return np.ascontiguousarray(t.float().numpy()), name
    return np.ascontiguousarray(t.numpy()), name


def save(obj, path) -> None:
    """Write ``obj`` (a state dict: nested dicts/lists of tensors, numbers, strings) to ``path``
    atomically. See the module docstring for the format."""
    tensors = []
    tree = _encode(obj, tensors)
    arrays, metas, off = [], [], 0
    for t in tensors:
        arr, name = _host_array(t)
        if name not in _NP_DTYPES and name != "bfloat16":
            raise TypeError(f"save: unsupported dtype {name}")
        metas.append({"dtype": name, "shape": list(arr.shape), "offset": off, "nbytes": arr.nbytes})
        arrays.append(arr)
        off += -(-arr.nbytes // _ALIGN) * _ALIGN
    crc = 0
    for arr, m in zip(arrays, metas):
        crc = zlib.crc32(_raw(arr), crc)
        crc = zlib.crc32(b"\0" * (-(-m["nbytes"] // _ALIGN) * _ALIGN - m["nbytes"]), crc)
    header = json.dumps({"tree": tree, "tensors": metas, "data_nbytes": off, "crc32": crc},
                        separators=(",", ":")).encode("utf-8")
    head = _PREFIX.pack(MAGIC, VERSION, len(header)) + header
    head += b"\0" * (-len(head) % _ALIGN)

    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for arr, m in zip(arrays, metas):
                f.write(_raw(arr))
                pad = -(-m["nbytes"] // _ALIGN) * _ALIGN - m["nbytes"]
                if pad:
                    f.write(b"\0" * pad)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass


def _bad(path, why):
    return ValueError(f"load: {path!r} is not a valid fastnn checkpoint: {why}")


def load(path, map_location=None):
    """Read a file written by :func:`save`. Tensors come back as fastnn.Tensor on the CPU (or
    on ``map_location``). Raises ValueError for a truncated, corrupted or foreign file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < _PREFIX.size:
        raise _bad(path, f"file too short ({len(raw)} bytes) for the {_PREFIX.size}-byte prefix")
    magic, version, hlen = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise _bad(path, f"wrong magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise _bad(path, f"unsupported format version {version} (this fastnn reads version {VERSION})")
    if hlen > len(raw) - _PREFIX.size:
        raise _bad(path, f"truncated: header of {hlen} bytes but only {len(raw) - _PREFIX.size} bytes follow")
    try:
        header = json.loads(raw[_PREFIX.size:_PREFIX.size + hlen].decode("utf-8"))
        metas, tree, dlen, crc = header["tensors"], header["tree"], int(header["data_nbytes"]), header["crc32"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise _bad(path, f"corrupted header ({e})") from None
    start = _PREFIX.size + hlen
    start += -start % _ALIGN
    data = memoryview(raw)[start:]
    if len(data) != dlen:
        raise _bad(path, f"truncated or padded: data section has {len(data)} bytes, the header says {dlen}")
    if zlib.crc32(data) != crc:
        raise _bad(path, "checksum mismatch (the data section is corrupted)")
    tensors = []
    for i, m in enumerate(metas):
        try:
            name, shape, off, nb = m["dtype"], [int(s) for s in m["shape"]], int(m["offset"]), int(m["nbytes"])
            npd = np.dtype(np.float32 if name == "bfloat16" else _NP_DTYPES[name])
        except (KeyError, TypeError, ValueError):
            raise _bad(path, f"corrupted entry for tensor {i}: {m!r}") from None
        n = math.prod(shape)
        if n * npd.itemsize != nb or off < 0 or off + nb > dlen or any(s < 0 for s in shape):
            raise _bad(path, f"tensor {i} ({name}, shape {shape}) does not fit the data section")
        arr = np.frombuffer(data[off:off + nb], dtype=npd).reshape(shape).copy()
        t = _C.from_numpy(arr)
        if name == "bfloat16":
            t = t._to(None, "bfloat16", False)
        if map_location is not None and map_location != "cpu":
            t = t._to(map_location, None, False)
        tensors.append(t)
    return _decode(tree, tensors, path)


def _decode(v, tensors, path):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (k, x), = v.items()
        if k == "t" and isinstance(x, int) and 0 <= x < len(tensors):
            return tensors[x]
        if k == "l" and isinstance(x, list):
            return [_decode(e, tensors, path) for e in x]
        if k == "u" and isinstance(x, list):
            return tuple(_decode(e, tensors, path) for e in x)
        if k == "d" and isinstance(x, list):
            out = {}
            for kv in x:
                if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], (str, int))):
                    raise _bad(path, f"corrupted dict entry {kv!r}")
                out[kv[0]] = _decode(kv[1], tensors, path)
            return out
    raise _bad(path, f"corrupted value {str(v)[:80]!r}")
