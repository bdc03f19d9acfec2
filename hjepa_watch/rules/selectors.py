"""Tag and run selectors: exact names, globs, and ``{name}`` captures that become labels.

``train/collapse/level{level}_std_sqrt_d`` matches ``train/collapse/level0_std_sqrt_d``
with the label ``level="0"``. ``*`` matches any run of characters (``/`` included,
as in fnmatch), ``?`` one character, ``[abc]`` / ``[!abc]`` a class; a capture
matches one or more characters other than ``/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_CAPTURE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PatternError(ValueError):
    """A selector that cannot be compiled; the message says why."""


@dataclass(frozen=True)
class Pattern:
    """A compiled selector.

    Attributes:
        source: the pattern as written.
        regex: the anchored regular expression it compiles to.
        captures: names of its ``{name}`` captures, in order.
        literal: True when the pattern names one tag exactly.
    """

    source: str
    regex: re.Pattern
    captures: tuple[str, ...]
    literal: bool

    def match(self, name: str) -> dict[str, str] | None:
        """The captured labels if ``name`` matches, else None."""
        m = self.regex.match(name)
        return None if m is None else m.groupdict()


@lru_cache(maxsize=4096)
def compile_pattern(source: str) -> Pattern:
    """Compile a selector.

    Raises:
        PatternError: empty pattern, an unclosed ``{`` or ``[``, a stray ``}``, a capture
            name that is not an identifier, or a name captured twice.
    """
    if not source:
        raise PatternError("empty pattern")
    out: list[str] = []
    captures: list[str] = []
    literal = not any(ch in source for ch in "{}*?[")
    i = 0
    while i < len(source):
        c = source[i]
        if c == "{":
            j = source.find("}", i)
            if j < 0:
                raise PatternError(f"unclosed '{{' at position {i} in {source!r}")
            name = source[i + 1 : j]
            if not _CAPTURE.fullmatch(name):
                raise PatternError(f"capture {{{name}}} in {source!r} is not a name (letters, digits, _)")
            if name in captures:
                raise PatternError(f"capture {{{name}}} appears twice in {source!r}")
            captures.append(name)
            out.append(f"(?P<{name}>[^/]+?)")
            i = j + 1
        elif c == "}":
            raise PatternError(f"unmatched '}}' at position {i} in {source!r}")
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            j = source.find("]", i + 2 if source[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                raise PatternError(f"unclosed '[' at position {i} in {source!r}")
            body = source[i + 1 : j]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        regex = re.compile("(?s:" + "".join(out) + r")\Z")
    except re.error as e:
        raise PatternError(f"invalid pattern {source!r}: {e}") from None
    return Pattern(source, regex, tuple(captures), literal)
