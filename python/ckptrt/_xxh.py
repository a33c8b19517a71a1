# SPDX-License-Identifier: Apache-2.0
"""XXH3-64, from the fastest backend present.

1. the ``xxhash`` module from PyPI (C, about 10 GB/s on one core);
2. else ``libxxhash.so.0`` through ctypes (Debian's libxxhash0, the library
   the C runtime links; the same speed, plus a few microseconds a call);
3. else none: verification is impossible and ``xxh3_64`` raises
   ``RuntimeError`` saying what to install.  (A pure-Python XXH3 would hash
   at a few MB/s, too slow for checkpoints.)
"""
import ctypes
import ctypes.util

BACKEND = None

try:
    import xxhash as _xxhash

    def xxh3_64(data):
        return _xxhash.xxh3_64_intdigest(data)

    BACKEND = "xxhash module"
except ImportError:  # pragma: no cover - depends on the environment
    _lib = None
    for _name in ("libxxhash.so.0", ctypes.util.find_library("xxhash")):
        if not _name:
            continue
        try:
            _lib = ctypes.CDLL(_name)
            _lib.XXH3_64bits.restype = ctypes.c_uint64
            _lib.XXH3_64bits.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            break
        except (OSError, AttributeError):
            _lib = None
    if _lib is not None:
        def xxh3_64(data):
            mv = memoryview(data).cast("B")
            n = mv.nbytes
            if n == 0:
                return _lib.XXH3_64bits(None, 0)
            if mv.readonly:
                buf = ctypes.create_string_buffer(mv.tobytes(), n)
                return _lib.XXH3_64bits(buf, n)
            c = (ctypes.c_char * n).from_buffer(mv)
            return _lib.XXH3_64bits(ctypes.addressof(c), n)

        BACKEND = "libxxhash (ctypes)"
    else:
        def xxh3_64(data):
            raise RuntimeError("ckptrt: no XXH3 implementation: pip install xxhash, or install "
                               "libxxhash0; or pass verify=False")
