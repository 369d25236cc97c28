"""Untrusted text on the user's terminal: object keys, job reasons, log lines, metric names, server errors.

Anyone who can write to a shared bucket chooses keys and records, and a job chooses its own log lines and
metrics. Printed raw, a terminal escape (`\\x1b[2J` clears the screen, OSC 52 writes the clipboard, OSC 0
retitles the window) acts on the reader's terminal, and rich markup (`[/bold]`, `[link=...]`) is either
interpreted or crashes the renderer with a MarkupError. So every such string passes through one of:
- `plain(text)`: control characters (C0 but tab, DEL, C1) become visible escapes (`\\x1b`), for click.echo;
- `markup(text)`: the same, then rich.markup.escape, for anything rich renders (tables, console.print).
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_LOG_CONTROL = re.compile(r"[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")  # keeps \t and \r (progress bars)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: Any) -> str:
    """`text` as one printable line: every control character (but tab) shown as an escape, never acted on."""
    return _CONTROL.sub(_visible, str(text))


def log_line(text: Any) -> str:
    """A job's log line: as `plain`, but a carriage return stays (tqdm redraws its bar with it)."""
    return _LOG_CONTROL.sub(_visible, str(text))


def markup(text: Any) -> str:
    """`text` for rich: controls made visible and square brackets escaped, so it prints exactly as written."""
    from rich.markup import escape

    return escape(plain(text))
