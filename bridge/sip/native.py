"""The few pjsip C functions pjsua2's Python API lacks, called from the wheel's own library.

pjsua2 cannot answer an in-dialog request with a code of the application's choosing, nor
change what the endpoint advertises in Allow and Supported. The pinned wheel
(pjsua2-python 2.15.1.post1) exports pjsip's C API, so ctypes reaches it. Only opaque
pointers and pjsip's public, stable header layout (`pjsip_hdr`, `pjsip_generic_array_hdr`)
are used. Call these on the SIP thread only, like every other pjsua2 call.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

import pjsua2 as pj

_lib = ctypes.CDLL(pj._pjsua2.__file__)


class _PjStr(ctypes.Structure):
    _fields_ = (("ptr", ctypes.c_void_p), ("slen", ctypes.c_ssize_t))

    def text(self) -> str:
        return ctypes.string_at(self.ptr, self.slen).decode() if self.ptr else ""


class _Text:
    """A pj_str_t over a buffer this object keeps alive (pjsip copies what it keeps)."""

    def __init__(self, text: str) -> None:
        data = text.encode()
        self.buffer = ctypes.create_string_buffer(data, len(data))
        self.value = _PjStr(ctypes.addressof(self.buffer), len(data))


class _Hdr(ctypes.Structure):
    """PJSIP_DECL_HDR_MEMBER: the list links, type, names and vtable of every header."""

    _fields_ = (
        ("prev", ctypes.c_void_p),
        ("next", ctypes.c_void_p),
        ("type", ctypes.c_int),
        ("name", _PjStr),
        ("sname", _PjStr),
        ("vptr", ctypes.c_void_p),
    )


PJSIP_GENERIC_ARRAY_MAX_COUNT = 32


class _ArrayHdr(ctypes.Structure):
    """pjsip_generic_array_hdr (Allow, Supported)."""

    _fields_ = (
        ("hdr", _Hdr),
        ("count", ctypes.c_uint),
        ("values", _PjStr * PJSIP_GENERIC_ARRAY_MAX_COUNT),
    )


def _bind(name: str, restype: object, *argtypes: object) -> ctypes._NamedFuncPointer:
    function = getattr(_lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function  # type: ignore[no-any-return]


_vp = ctypes.c_void_p
_rdata_get_dlg = _bind("pjsip_rdata_get_dlg", _vp, _vp)
_dlg_respond = _bind("pjsip_dlg_respond", ctypes.c_int, _vp, _vp, ctypes.c_int, _vp, _vp, _vp)
_pool_create = _bind("pjsua_pool_create", _vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t)
_pool_release = _bind("pj_pool_release", None, _vp)
_string_hdr = _bind("pjsip_generic_string_hdr_create", _vp, _vp, _vp, _vp)
_endpt = _bind("pjsua_get_pjsip_endpt", _vp)
_get_capability = _bind("pjsip_endpt_get_capability", _vp, _vp, ctypes.c_int, _vp)


# Bodies pjsua's presence, message and transfer modules register, which the bridge refuses.
NOT_ACCEPTED = {
    "application/pidf+xml",
    "application/xpidf+xml",
    "application/dialog-info+xml",
    "application/simple-message-summary",
    "message/sipfrag;version=2.0",
    "application/im-iscomposing+xml",
    "text/plain",
}


class NativeError(Exception):
    """A pjsip C call failed."""


def respond(rdata: object, code: int, reason: str, headers: Iterable[tuple[str, str]]) -> None:
    """Answer the in-dialog request behind a pjsua2 SipRxData's `pjRxData`, statefully.

    Answered from `onCallTsxState`, which pjsua calls before its own handling of the
    request, so pjsua then leaves the (no longer trying) transaction alone."""
    pointer = int(rdata)  # type: ignore[call-overload]
    dialog = _rdata_get_dlg(pointer)
    if not dialog:
        raise NativeError("the request belongs to no dialog")
    pool = _pool_create(b"in-dialog", 512, 512)
    try:
        head = _Hdr()
        head.prev = head.next = ctypes.addressof(head)
        for name, value in headers:
            hname, hvalue = _Text(name), _Text(value)
            raw = _string_hdr(pool, ctypes.byref(hname.value), ctypes.byref(hvalue.value))
            if not raw:
                raise NativeError(f"no memory for the {name} header")
            header = _Hdr.from_address(raw)
            last = _Hdr.from_address(head.prev)
            header.prev, header.next = head.prev, ctypes.addressof(head)
            last.next = raw
            head.prev = raw
        text = _Text(reason)
        status = _dlg_respond(
            dialog, pointer, code, ctypes.byref(text.value), ctypes.byref(head), None
        )
    finally:
        _pool_release(pool)
    if status != 0:
        raise NativeError(f"pjsip_dlg_respond failed with status {status}")


def withdraw_capabilities(header_type: int, names: set[str]) -> list[str]:
    """Remove values from what the endpoint advertises (Allow or Supported); returns the
    values left. pjsua registers REFER, MESSAGE, SUBSCRIBE, NOTIFY and `replaces` for
    features the bridge refuses; a peer should not be invited to use them."""
    raw = _get_capability(_endpt(), header_type, None)
    if not raw:
        return []
    header = _ArrayHdr.from_address(raw)
    dropped = {n.lower() for n in names}
    kept = [
        (value.ptr, value.slen, value.text())
        for value in header.values[: header.count]
        if value.text().lower() not in dropped
    ]
    # The strings stay in the endpoint's pool; only the array of references shrinks.
    for i, (ptr, length, _text) in enumerate(kept):
        header.values[i] = _PjStr(ptr, length)
    header.count = len(kept)
    return [text for _ptr, _length, text in kept]
