"""The few C types the binding layer uses, made directly on ``_ctypes`` (the C module under
``ctypes``), so that ``create``, ``run`` and ``exec`` do not import ``ctypes`` itself.

``import ctypes`` costs ~1 ms and ~35 page faults more than ``_ctypes`` (and imports ``types``):
its ``__init__`` and ``_endian`` build every C type, their byte-swapped twins, the prototypes of
memmove, memset, string_at and cast, ``pythonapi``... of which ocirt needs a dozen. The names
here are those of ``ctypes`` and are made the same way (the same ``_type_`` codes, function
flags and default result type c_int), so a binding module reads as it would with ``ctypes``;
mypy checks those modules against ``ctypes``' stubs. Never mix these types with ``ctypes``'
own: a ``ffi.c_int`` is no ``ctypes.c_int`` (``argtypes`` refuse it).
"""

from __future__ import annotations

import sys
from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_PYTHONAPI,
    FUNCFLAG_USE_ERRNO,
    POINTER,
    RTLD_LOCAL,
    Array,
    CFuncPtr,
    Structure,
    _SimpleCData,
    addressof,
    byref,
    dlopen,
    get_errno,
    sizeof,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    _Int: TypeAlias = _SimpleCData[int]
    _Bytes: TypeAlias = _SimpleCData[bytes]
    _BytesOrNone: TypeAlias = _SimpleCData[bytes | None]
    _IntOrNone: TypeAlias = _SimpleCData[int | None]
else:  # _SimpleCData takes no subscript at run time
    _Int = _Bytes = _BytesOrNone = _IntOrNone = _SimpleCData

__all__ = ["CDLL", "POINTER", "Array", "PyDLL", "Structure", "addressof", "byref", "c_char",
           "c_char_p", "c_int", "c_int32", "c_long", "c_size_t", "c_uint", "c_uint32",
           "c_uint64", "c_ulong", "c_ushort", "c_void_p", "create_string_buffer",
           "get_errno", "sizeof"]


class c_ushort(_Int):
    _type_ = "H"


class c_int(_Int):
    _type_ = "i"


class c_uint(_Int):
    _type_ = "I"


class c_long(_Int):
    _type_ = "l"


class c_ulong(_Int):
    _type_ = "L"


class c_char(_Bytes):
    _type_ = "c"


class c_char_p(_BytesOrNone):
    _type_ = "z"


class c_void_p(_IntOrNone):
    _type_ = "P"


# The sized names, as ctypes picks them on Linux (int is 32 bits, long the size of a pointer)
c_size_t = c_ulong
c_int32 = c_int
c_uint32 = c_uint
if sizeof(c_ulong) == 8:  # LP64: every machine numbers.py knows
    c_uint64 = c_ulong
else:
    class c_uint64(_Int):  # type: ignore[no-redef]  # ctypes' c_ulonglong, on ILP32
        _type_ = "Q"


def create_string_buffer(init: bytes | int, size: int | None = None) -> Array[c_char]:
    """A mutable char array: of ``init``'s bytes (and a NUL, unless ``size`` says how long),
    or of ``init`` zero bytes (as ``ctypes.create_string_buffer``)."""
    if isinstance(init, bytes):
        if size is None:
            size = len(init) + 1
        sys.audit("ctypes.create_string_buffer", init, size)
        buf = (c_char * size)()
        # (typeshed gives ``value`` to arrays of ctypes.c_char only; _ctypes, to any "c" array)
        buf.value = init  # type: ignore[misc, assignment]
        return buf
    if isinstance(init, int):
        sys.audit("ctypes.create_string_buffer", None, init)
        return (c_char * init)()
    raise TypeError(init)


class CDLL:
    """A loaded library (dlopen); its functions are attributes, cdecl, returning c_int unless
    ``restype`` says otherwise, errno saved for ``get_errno`` with ``use_errno``."""

    _func_flags_ = FUNCFLAG_CDECL

    def __init__(self, name: str | None, use_errno: bool = False) -> None:
        flags = self._func_flags_ | (FUNCFLAG_USE_ERRNO if use_errno else 0)

        class _FuncPtr(CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._name = name
        self._FuncPtr = _FuncPtr
        # typeshed's dlopen takes no None; _ctypes' takes it (the program itself, as ctypes)
        self._handle: int = dlopen(name, RTLD_LOCAL)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self._name}', handle {self._handle:x}>"

    def __getattr__(self, name: str) -> CFuncPtr:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        func = self._FuncPtr((name, self))  # type: ignore[arg-type]  # (typeshed: ctypes.CDLL)
        func.__name__ = name  # type: ignore[attr-defined]  # set as ctypes does
        setattr(self, name, func)
        return func


class PyDLL(CDLL):
    """A library whose functions are called with the GIL held (``ctypes.PyDLL``)."""

    _func_flags_ = FUNCFLAG_CDECL | FUNCFLAG_PYTHONAPI
