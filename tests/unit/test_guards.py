"""Grep guards: a concern with one home in the package stays there.

The search reads Python names (``tokenize``), so a comment or docstring that mentions a function
does not count; the emulators (``mie.emulation``, card side) are out of scope.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mie"
EXCLUDED = (SRC / "emulation",)

# Certificates are loaded, with cryptography's warnings filtered, in one place: the strict parse.
CERTIFICATE_LOADING = frozenset(
    {
        "load_der_x509_certificate",
        "load_pem_x509_certificate",
        "load_pem_x509_certificates",
        "catch_warnings",
    }
)
CERTIFICATE_HOME = SRC / "trust" / "parse.py"


def package_files() -> Iterator[Path]:
    """:return: the package's Python files, emulators excluded."""
    for path in sorted(SRC.rglob("*.py")):
        if not any(path.is_relative_to(excluded) for excluded in EXCLUDED):
            yield path


def names_used(source: str, wanted: frozenset[str]) -> list[tuple[int, str]]:
    """:return: ``(line, name)`` for each name of ``wanted`` the code uses (not in strings or
    comments)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [
        (t.start[0], t.string) for t in tokens if t.type == tokenize.NAME and t.string in wanted
    ]


def uses_outside(home: Path, wanted: frozenset[str]) -> list[str]:
    """:return: ``file:line: name`` for each use of a name of ``wanted`` outside ``home``."""
    found = []
    for path in package_files():
        if path == home:
            continue
        for line, name in names_used(path.read_text(encoding="utf-8"), wanted):
            found.append(f"{path.relative_to(SRC.parent)}:{line}: {name}")
    return found


def test_the_name_search_reads_code_not_text() -> None:
    source = '"""load_der_x509_certificate"""\n# catch_warnings\nx = warnings.catch_warnings()\n'
    assert names_used(source, CERTIFICATE_LOADING) == [(3, "catch_warnings")]


def test_the_home_of_certificate_loading_is_where_the_guard_looks() -> None:
    used = {name for _, name in names_used(CERTIFICATE_HOME.read_text(), CERTIFICATE_LOADING)}
    assert {"load_der_x509_certificate", "catch_warnings"} <= used


def test_certificates_are_loaded_only_by_the_strict_parse() -> None:
    assert uses_outside(CERTIFICATE_HOME, CERTIFICATE_LOADING) == []
