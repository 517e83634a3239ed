"""Text from spans and logs made safe to print on a terminal: every control character visible.

Whoever can send a span (any OTLP client of the collector) or an HTTP request (its path, its
``User-Agent`` end up in logs) chooses text that ``analyze_traces.py`` and ``stackctl`` print.
Printed raw, ``ESC ] 0 ;`` retitles the terminal, ``ESC [ 2 J`` clears it, ``ESC [ 1 A`` rewrites
a line already printed (a failing trace made to read "ok"), ``ESC ] 52`` writes the clipboard;
a right-to-left override (U+202E) reorders what follows it on the line. :func:`visible` writes
each such character as a Python escape (``\\x1b``, ``\\n``, ``\\u202e``), as kubectl does since
CVE-2021-25743: the text stays readable, nothing in it acts on the terminal.

Made visible (one character class, ``UNSAFE``; a unit test checks it against ``unicodedata``):

- C0 controls U+0000-U+001F (newline and tab included: in a table cell or a one-line message
  a line break is itself a forgery), DEL U+007F, C1 controls U+0080-U+009F (U+009B is an 8-bit
  CSI, U+009D an 8-bit OSC). Escaping ESC and the C1 introducers neutralises every escape
  sequence (CSI, OSC, DCS, APC, PM, SOS): what follows is plain text.
- Every Unicode format character (category Cf): the bidirectional embeddings, overrides and
  isolates (U+202A-U+202E, U+2066-U+2069), the marks U+200E, U+200F, U+061C, zero-width
  characters (U+200B-U+200D, U+2060, U+FEFF) that make two names look alike, the tag characters
  U+E0000-U+E007F that hide text, the soft hyphen. A zero-width joiner inside an emoji is shown
  escaped too: in an operator's view of span data, seeing it beats hiding it.
- The line and paragraph separators U+2028 and U+2029, and lone surrogates (U+D800-U+DFFF,
  which a terminal's encoder would refuse).

A backslash is left as it is, so a Windows path stays readable; an escape in the output is
therefore either made here or was typed as such in the span: either way, inert.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Category Cc, Cf, Zl, Zp and Cs, as ranges (Unicode 15.1/16; built by hand rather than from
# unicodedata at import, which would cost a scan of 1.1 million code points on every start).
UNSAFE = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u00ad"  # soft hyphen
    "\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"  # Arabic marks, ALM
    "\u180e"  # Mongolian vowel separator
    "\u200b-\u200f"  # zero-width space, ZWNJ, ZWJ, LRM, RLM
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064\u2066-\u206f"  # word joiner, invisible operators, bidi isolates, deprecated
    "\ud800-\udfff"  # lone surrogates
    "\ufeff\ufff9-\ufffb"  # BOM / zero-width no-break space, interlinear annotation
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"  # language tag, tag characters
    "]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character of ``UNSAFE`` written as a Python escape (``\\x1b``).

    ``newlines=True`` keeps ``\\n`` as a line break, for text printed as a block of lines (a
    log tail) where each line is its own; everywhere else (a table cell, a message on one line)
    a newline is made visible too. Text with nothing to escape is returned as is (same object).
    """
    # str.isprintable() is False for every character of UNSAFE (and a few harmless ones, such
    # as a no-break space): a C-speed test that clears almost all text
    if text.isprintable() or UNSAFE.search(text) is None:
        return text
    if newlines:
        return "\n".join(UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return UNSAFE.sub(_escape, text)


T = TypeVar("T")


def visible_all(value: T) -> T:
    """``value`` with :func:`visible` applied to every string in it: through dataclasses
    (their init fields), lists, tuples and dicts (keys too); other values as they are. What
    changes is copied (``value`` itself is never modified), what does not is shared. For a
    report object about to be printed, so no renderer can forget a field."""
    return _walk(value)


def _walk(value: Any) -> Any:
    """``value`` with its strings made visible: the same object where nothing changed (most
    text is safe), so a large report costs a traversal, not a copy."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, list | tuple):
        items = [_walk(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        pairs = [(_walk(key), _walk(item)) for key, item in value.items()]
        if all(
            k is old_k and v is old_v
            for (k, v), (old_k, old_v) in zip(pairs, value.items(), strict=True)
        ):
            return value
        return dict(pairs)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in _init_fields(type(value)):
            old = getattr(value, f)
            new = _walk(old)
            if new is not old:
                changes[f] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


_FIELDS: dict[type, tuple[str, ...]] = {}


def _init_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return names


# In encoded JSON every C0 control is already an escape (and a structural newline is needed).
_C0 = "\x00-\x1f"
_UNSAFE_BEYOND_C0 = re.compile(UNSAFE.pattern.replace(_C0, "", 1))


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes a character beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def visible_json(document: str) -> str:
    """Encoded JSON with DEL and each C1, format or separator character written as a
    ``\\uXXXX`` escape: the same values to a JSON parser, inert on a terminal (``--format
    json`` is printed to one too). The encoder has already escaped C0."""
    # the character class is slow to scan for at every position: first ask which distinct
    # characters there are (an ASCII document: only DEL can be one), at memory speed
    if document.isascii():
        if "\x7f" not in document:
            return document
    elif not any(_UNSAFE_BEYOND_C0.match(char) for char in set(document) if char > "\x7e"):
        return document
    return _UNSAFE_BEYOND_C0.sub(_json_escape, document)


def visible_markup(text: str) -> str:
    """:func:`visible` ``text``, then escaped for rich's console markup, for a message built as
    markup (``f"[red]error:[/red] {text}"``): a ``[bold]`` or ``[link=...]`` in span or log
    text is printed as written, not obeyed."""
    from rich.markup import escape

    return escape(visible(text))
