"""One message style across packages, for every ``raise X("...")`` of the package whose message
is a string literal or an f-string (read with ``ast``; an f-string's fields count as ``{}``).

Checked: a message is one line (the CLI prints one line per error), has no leading or trailing
blank, and ends without a period (an ellipsis is fine). Not checked yet: the case of the first
word. About 50 messages start with a lower-case word that is not a name, most of them reasons
that other messages quote mid-sentence (``revocation unknown: cannot fetch …``), so that rule
needs the reason fragments told apart from top-level messages first (issue 8, E4).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mie"


@dataclass(frozen=True)
class Message:
    """A literal exception message and where it is raised."""

    where: str
    exception: str
    text: str


def literal_text(node: ast.expr) -> str | None:
    """:return: the text of a string literal or f-string (fields as ``{}``), else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
        return "".join(str(p) for p in parts)
    return None


def raised_messages(source: str, name: str) -> list[Message]:
    """:return: the literal first argument of every ``raise X(...)`` in ``source``."""
    found = []
    raises = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Raise)]
    for node in sorted(raises, key=lambda n: n.lineno):
        if not isinstance(node.exc, ast.Call) or not node.exc.args:
            continue
        text = literal_text(node.exc.args[0])
        if text is not None:
            exception = ast.unparse(node.exc.func)
            found.append(Message(f"{name}:{node.lineno}", exception, text))
    return found


def package_messages() -> list[Message]:
    """:return: the literal messages raised anywhere in the package."""
    found: list[Message] = []
    for path in sorted(SRC.rglob("*.py")):
        found += raised_messages(
            path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent))
        )
    return found


def style_problems(message: Message) -> list[str]:
    """:return: what breaks the message style, empty when nothing does."""
    text = message.text
    problems = []
    if not text.strip():
        problems.append("empty")
    if "\n" in text or "\r" in text:
        problems.append("more than one line")
    if text != text.strip():
        problems.append("leading or trailing blank")
    if text.endswith(".") and not text.endswith("..."):
        problems.append("final period")
    return problems


def test_the_reader_finds_literal_and_formatted_messages() -> None:
    source = (
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError(f'Bad {x!r} value.')\n"
        "    raise KeyError(x)\n"
        "    raise mie.errors.TlvError('Two\\nlines')\n"
    )
    found = raised_messages(source, "m.py")
    assert found == [
        Message("m.py:3", "ValueError", "Bad {} value."),
        Message("m.py:5", "mie.errors.TlvError", "Two\nlines"),
    ]
    assert [style_problems(m) for m in found] == [["final period"], ["more than one line"]]


def test_the_package_has_messages_to_check() -> None:
    assert len(package_messages()) > 100


@pytest.mark.parametrize(
    "text", ["Invalid PIN, 2 tries left", "type the command: mie replay FILE ...", "SW 6A82"]
)
def test_messages_in_the_house_style_pass(text: str) -> None:
    assert style_problems(Message("x.py:1", "E", text)) == []


def test_every_message_is_one_line_without_a_final_period() -> None:
    problems = [
        f"{m.where}: {m.exception}({m.text!r}): {', '.join(p)}"
        for m in package_messages()
        if (p := style_problems(m))
    ]
    assert problems == []
