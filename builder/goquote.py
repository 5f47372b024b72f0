"""Go's ``strconv.Quote``, so the parser's dump matches BuildKit's byte for byte.

Strings read with ``errors="surrogateescape"`` carry each byte that is not
valid UTF-8 as a code point U+DC80..U+DCFF; Go sees those bytes raw and
writes them as ``\\xNN``, so they are turned back into bytes here.
"""

from __future__ import annotations

__all__ = ["quote"]

# Go writes these seven controls with their C escapes, not as \xNN.
_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def quote(text: str) -> str:
    """Return ``text`` as Go's ``strconv.Quote`` would write it."""
    return '"' + "".join(_quote_char(ch) for ch in text) + '"'


def _quote_char(ch: str) -> str:
    code = ord(ch)
    if ch in ('"', "\\"):
        return "\\" + ch
    if 0xD800 <= code <= 0xDFFF:
        return _bad_bytes(ch)
    # Python's isprintable() is Go's unicode.IsPrint for a single character:
    # categories L, M, N, P, S and the ASCII space.
    if ch.isprintable():
        return ch
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _bad_bytes(ch: str) -> str:
    """A surrogate stands for bytes Go could not decode: one ``\\xNN`` each."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        # surrogateescape: exactly one original byte.
        return f"\\x{code - 0xDC00:02x}"
    # A lone surrogate from elsewhere: Go would hold its 3-byte encoding.
    return "".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
