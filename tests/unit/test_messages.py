"""One message style across packages, for every ``raise X(...)`` of the package whose message
is a string literal or an f-string (read with ``ast``; an f-string's fields count as ``{}``; the
message is the first literal argument, so ``VerificationError(code, "...")`` is read too).

A message is one line (the CLI prints one line per error), has no leading or trailing blank, and
ends without a period (an ellipsis is fine).

Its first word is capitalised, unless it is a name written as in code or data, which keeps its
own case: a field (``{}``: a file, a DN, a JSON path), a quoted value, a dotted, bracketed or
snake-case name (``evidence.chain``, ``authenticate()``, ``max_data``), a camel-case one
(``idNat``), or a ``mie`` command line. Messages are composed as ``"<subject>: <problem>"``
(``{source}: not one PEM block``, ``Cannot fetch {url}: {reason}``), so the rule is about the
start of a message a caller sees whole: the part after a colon keeps whatever case its own text
has.

The exception is the reason fragment: an exception that never reaches a caller on its own and is
only quoted inside another message (``unsupported CRL form: {e}``). Its message starts in lower
case, as the text after a colon does: the classes private to a module (``_Unusable``) and the
few listed in :data:`FRAGMENTS`. :data:`VERBATIM` lists messages that copy Python's own wording.
"""

from __future__ import annotations

import ast
import re
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
        if not isinstance(node.exc, ast.Call):
            continue
        texts = [t for t in map(literal_text, node.exc.args) if t is not None]
        if texts:
            text = texts[0]
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


FRAGMENTS = {
    # Caught in mie.trust.verify and quoted as "unsupported CRL form: {e}".
    ("mie/trust/crl.py", "UnsupportedRevocation"),
    # The fetch worker's own stop, read back by describe() into "Cannot fetch {url}: {reason}".
    ("mie/trust/cache.py", "TimeoutError"),
    # The reason of a relay refusal, quoted as "Relay refused: {reason}" (and sent to the IAM).
    ("mie/relay/policy.py", "RelayRefusedError"),
    ("mie/relay/agent.py", "RelayRefusedError"),
    # The problem of a CBOR refusal, quoted as "CBOR at offset {offset}: {problem}".
    ("mie/core/cbor.py", "CborFormatError"),
    # The problem of a file field, quoted as "{file title}: {problem}" by the readers' fail().
    ("mie/emulation/ctap2_state.py", "fail"),
    ("mie/fido/allowlist.py", "fail"),
    ("mie/fido/policy.py", "fail"),
    # The first bad record of a trail, quoted as "audit trail {file}: record {n} (line {l}): ...".
    ("mie/audit.py", "AuditChainError"),
    # The problem of a service configuration member, quoted as "{member}: {problem}" by fail().
    ("mie/service/config.py", "fail"),
    # The problem of a PSC claims mapping member, quoted as "The {name}: {problem}".
    ("mie/psc.py", "ValueError"),
}
"""Reason fragments raised by public classes: ``(file, exception)``."""
VERBATIM = {
    # The wording of Python's own AttributeError for a module, which tools look for.
    ("mie/__init__.py", "AttributeError"),
    ("mie/desfire/__init__.py", "AttributeError"),
    ("mie/relay/__init__.py", "AttributeError"),
    ("mie/errors.py", "AttributeError"),
    ("mie/fido/errors.py", "AttributeError"),
    # The service's 500 message, worded as mie.service.errors words it for any handler.
    ("mie/service/relay.py", "InternalError"),
    ("mie/fido/__init__.py", "AttributeError"),
}
"""Messages that copy Python's wording: ``(file, exception)``."""

# A first word that is a name: a field, a quote, or a word with a dot, bracket, parenthesis,
# underscore, slash, equals sign or an inner capital, an acronym (CRL, PIN), or the command name.
_NAME = re.compile(r"""(?:[{'"`]|\S*[.()\[\]_/=<>]|[a-z]+[A-Z]|[A-Z0-9]{2,}\b|mie(?:\s|$))""")


def is_fragment(message: Message) -> bool:
    """:return: whether the message is a reason fragment (see the module docstring)."""
    where = message.where.rsplit(":", 1)[0]
    name = message.exception.rsplit(".", 1)[-1]
    # A private class (``_Unusable``); a private helper that builds a public error
    # (``_unknown(...)``) is not one.
    return (name.startswith("_") and name[1:2].isupper()) or (where, name) in FRAGMENTS


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
    where = message.where.rsplit(":", 1)[0]
    first = text[:1]
    if (where, message.exception.rsplit(".", 1)[-1]) in VERBATIM or not first.isalpha():
        return problems
    if is_fragment(message):
        if first.isupper() and not _NAME.match(text):
            problems.append("a reason fragment starts in lower case")
    elif first.islower() and not _NAME.match(text):
        problems.append("first word not capitalised")
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
    "text",
    [
        "Invalid PIN, 2 tries left",
        "SW 6A82",
        "{}: not one PEM block",
        "evidence.nonce is not lower-case hex",
        "idNat {} has an unknown prefix",
        "authenticate() takes an AuthRequest",
        "header_length must be 0..{}",
        "mie record records card sessions: {}",
        "'x' is not a known value",
    ],
)
def test_messages_in_the_house_style_pass(text: str) -> None:
    assert style_problems(Message("x.py:1", "E", text)) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cannot fetch {}: {}", "first word not capitalised"),
        ("the trust store is empty", "first word not capitalised"),
        ("Two\nlines", "more than one line"),
        ("Done.", "final period"),
    ],
)
def test_messages_out_of_the_house_style_fail(text: str, problem: str) -> None:
    assert problem in style_problems(Message("x.py:1", "E", text))


def test_reason_fragments_start_in_lower_case() -> None:
    assert style_problems(Message("mie/trust/crl.py:1", "_Unusable", "issuer is not a CA")) == []
    fragment = Message("mie/trust/crl.py:1", "UnsupportedRevocation", "Indirect CRL")
    assert style_problems(fragment) == ["a reason fragment starts in lower case"]
    assert style_problems(Message("mie/trust/crl.py:1", "_Unusable", "CRL is stale")) == []
    public = Message("mie/trust/cache.py:1", "_unknown", "cannot fetch {}")
    assert style_problems(public) == ["first word not capitalised"]
    assert style_problems(Message("mie/__init__.py:1", "AttributeError", "module 'mie'")) == []


def test_every_message_is_in_the_house_style() -> None:
    problems = [
        f"{m.where}: {m.exception}({m.text!r}): {', '.join(p)}"
        for m in package_messages()
        if (p := style_problems(m))
    ]
    assert problems == []
