"""Where in a bash command a placeholder stands, as far as the shell reading the value *again* is concerned.

A placeholder becomes one shell word (shlex.quote), which is safe wherever bash parses a word once. It is
not safe where bash reads the text a second time:

- quotes and backticks (the quoted value closes the quote it sits in), heredoc bodies (the value's quotes
  are plain characters there, so ``$(...)`` in it runs), the arguments of ``eval``: the value is parsed
  again as shell code -> "reparse": refused whatever the value;
- arithmetic: ``(( ))``, ``$(( ))``, ``$[ ]``, ``let``, ``declare -i``, array subscripts ``a[...]``,
  ``${...}`` (offsets, lengths, subscripts) and the operands of ``[[ ... -eq/-lt/... ]]``. Bash evaluates the
  *value* as an expression there, and an expression such as ``a[$(id)]`` runs ``id`` -> "arithmetic":
  allowed only for a value that is a plain number.

This is a small scanner for that one question, not a bash parser. Where it is unsure it says "arithmetic"
or "reparse" (refusing a spec that bash would have run safely is a clear line at submit; the opposite is a
command run on someone's machine)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: Words that start a simple command but are not its command name.
_LEAD_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "time", "{", "}", "command", "builtin"}
_DECLARE_WORDS = {"declare", "typeset", "local", "export", "readonly"}
_ARITH_TEST = re.compile(r"(?:^|\s)-(?:eq|ne|lt|le|gt|ge|v)(?:\s|$)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_ARITH_NAMES = {
    "((": "(( ))",
    "$((": "$(( ))",
    "$[": "$[ ]",
    "sub[": "an array subscript [ ]",
    "${": "${ }",
}
#: Frames inside which the text is an arithmetic expression ("a(" is a parenthesis within one).
_ARITH_KINDS = {*_ARITH_NAMES, "a("}
#: How many characters open each frame kind (a frame records the index just after its opener).
_OPENER_LENGTH = {
    "'": 1,
    '"': 1,
    "`": 1,
    "$(": 2,
    "(": 1,
    "a(": 1,
    "((": 2,
    "$((": 3,
    "$[": 2,
    "${": 2,
    "[[": 2,
    "sub[": 1,
}
_QUOTE_NAMES = {"'": "single quotes", '"': "double quotes", "`": "backticks"}


@dataclass(frozen=True)
class Context:
    """What the shell does with a placeholder's value here: parse it again, or evaluate it as arithmetic."""

    kind: Literal["reparse", "arithmetic"]
    where: str


def _open_expansion(command: str, i: int, stack: list[tuple[str, int]]) -> int | None:
    """Push the `$((`, `$(`, `${` or `$[` that starts at `i` (read the same inside double quotes and out) and
    return the index of its last character (the scanner steps past it); None when none starts here."""
    if command.startswith("$((", i):
        stack.append(("$((", i + 3))
        return i + 2
    if command.startswith("$(", i):
        stack.append(("$(", i + 2))
        return i + 1
    if command.startswith("${", i) or command.startswith("$[", i):
        stack.append(("${" if command[i + 1] == "{" else "$[", i + 2))
        return i + 1
    return None


def is_number(value: object) -> bool:
    """A value bash arithmetic reads as a number and nothing else (bools are words, not numbers)."""
    return not isinstance(value, bool) and bool(_NUMBER.fullmatch(str(value)))


def _word_start(command: str, i: int) -> bool:
    return i == 0 or command[i - 1] in " \t\n;&|()<>"


def _simple_command(text: str) -> Context | None:
    """The context a `let`, `eval` or `declare -i` at the start of the current simple command gives."""
    piece = re.split(r"[;&|\n()]", text)[-1]
    words = piece.split()
    while words and (words[0] in _LEAD_WORDS or _ASSIGNMENT.match(words[0])):
        words.pop(0)
    if not words:
        return None
    if words[0] == "let":
        return Context("arithmetic", "let")
    if words[0] == "eval":
        return Context("reparse", "the arguments of eval")
    if words[0] in _DECLARE_WORDS and any(w.startswith(("-", "+")) and "i" in w for w in words[1:]):
        return Context("arithmetic", f"{words[0]} -i")
    return None


def _heredoc_word(command: str, i: int) -> tuple[str, bool, int]:
    """At ``<<`` (or ``<<-``): the delimiter (quotes removed), whether tabs are stripped, the index after it."""
    j = i + 2
    strip = command.startswith("-", j)
    j += 1 if strip else 0
    while j < len(command) and command[j] in " \t":
        j += 1
    start = j
    while j < len(command) and command[j] not in " \t\n;&|<>()":
        j += 1
    return re.sub(r"[\"'\\]", "", command[start:j]), strip, j


def _heredoc_body_end(command: str, start: int, delimiter: str, strip: bool) -> int:
    """The index just after the delimiter line of a heredoc body starting at ``start`` (or the end)."""
    pos = start
    while pos < len(command):
        end = command.find("\n", pos)
        line = command[pos : len(command) if end < 0 else end]
        if (line.lstrip("\t") if strip else line) == delimiter:
            return len(command) if end < 0 else end
        if end < 0:
            break
        pos = end + 1
    return len(command)


def placeholder_contexts(command: str, spans: list[tuple[int, int]]) -> dict[int, Context | None]:
    """For each placeholder span (start, end) of ``command``: its Context, or None where one word is safe."""
    starts = {start: end for start, end in spans}
    result: dict[int, Context | None] = {}
    stack: list[tuple[str, int]] = []  # (frame kind, index after its opener)
    pending: list[tuple[str, bool]] = []  # heredocs opened on the current line
    i = 0
    n = len(command)

    def classify(pos: int) -> Context | None:
        top = stack[-1][0] if stack else None
        if top in _QUOTE_NAMES:
            return Context("reparse", _QUOTE_NAMES[top])
        for kind, _ in reversed(stack):
            if kind in _ARITH_NAMES:  # the innermost arithmetic frame names the context
                return Context("arithmetic", _ARITH_NAMES[kind])
        for kind, opened in stack:
            if kind == "[[":
                close = command.find("]]", pos)
                if _ARITH_TEST.search(command[opened : n if close < 0 else close]):
                    return Context("arithmetic", "[[ ]] with an arithmetic comparison (-eq, -lt, ...)")
        # the simple command around the placeholder, then each one around the $(...) holding it: the output
        # of `let x=$(echo VALUE)` is evaluated by let, the output of `eval "$(echo VALUE)"` parsed by eval
        bases = [(0, -1)] + [(opened, j) for j, (kind, opened) in enumerate(stack) if kind in ("$(", "(")]
        for base, j in reversed(bases):
            end = pos if j + 1 >= len(stack) else stack[j + 1][1] - _OPENER_LENGTH[stack[j + 1][0]]
            context = _simple_command(command[base:end])
            if context is not None:
                return context
        return None

    while i < n:
        if i in starts:
            result[i] = classify(i)
            i = starts[i]
            continue
        char = command[i]
        top = stack[-1][0] if stack else None
        if top == "'":
            if char == "'":
                stack.pop()
            i += 1
            continue
        if char == "\\":
            i += 2
            continue
        if top == "`":
            if char == "`":
                stack.pop()
            i += 1
            continue
        if top == '"':
            if char == '"':
                stack.pop()
            elif (opened := _open_expansion(command, i, stack)) is not None:
                i = opened
            elif char == "`":
                stack.append(("`", i + 1))
            i += 1
            continue
        # unquoted text: a command, an arithmetic expression, ${...} or [[ ... ]]
        if char == "'" or char == '"' or char == "`":
            stack.append((char, i + 1))
        elif char == "#" and _word_start(command, i) and top not in _ARITH_KINDS:
            end = command.find("\n", i)
            i = n if end < 0 else end
            continue
        elif (opened := _open_expansion(command, i, stack)) is not None:
            i = opened
        elif command.startswith("((", i) and top not in _ARITH_KINDS and _word_start(command, i):
            stack.append(("((", i + 2))
            i += 1
        elif command.startswith("))", i) and top in ("((", "$(("):
            stack.pop()
            i += 1
        elif char == "(":
            stack.append(("a(" if top in _ARITH_KINDS else "(", i + 1))
        elif char == ")":
            if top in ("(", "$(", "a("):
                stack.pop()
        elif (char == "}" and top == "${") or (char == "]" and top in ("$[", "sub[")):
            stack.pop()
        elif command.startswith("[[", i) and _word_start(command, i) and top not in _ARITH_KINDS:
            stack.append(("[[", i + 2))
            i += 1
        elif command.startswith("]]", i) and top == "[[":
            stack.pop()
            i += 1
        elif char == "[" and i > 0 and (command[i - 1].isalnum() or command[i - 1] == "_"):
            stack.append(("sub[", i + 1))
        elif command.startswith("<<<", i):  # a here-string: its word is an ordinary word
            i += 3
            continue
        elif command.startswith("<<", i) and top not in _ARITH_KINDS:
            delimiter, strip, i = _heredoc_word(command, i)
            pending.append((delimiter, strip))
            continue
        elif char == "\n" and pending:
            pos = i + 1
            for delimiter, strip in pending:
                end = _heredoc_body_end(command, pos, delimiter, strip)
                for start in starts:
                    if pos <= start < end:
                        result[start] = Context("reparse", "a heredoc body")
                pos = end
            pending.clear()
            i = pos
            continue
        i += 1
    return result
