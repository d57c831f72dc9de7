"""The package root stays thin: importing the core (or the error types) loads no trust, card or
ASN.1 code, and every public name of ``mie`` still resolves, lazily, from the root."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mie

# Modules a light import must not pull in: the chain checks and their ASN.1 parser, the card
# sessions, and (H1) the hardware stack.
HEAVY = ("mie.trust", "mie.cards", "asn1crypto", "smartcard")

# The names ``mie`` exported before issue 8: they stay reachable from the root.
EXPORTED_BEFORE = frozenset(
    {
        "AuthResult",
        "Authenticator",
        "CertificateCache",
        "CpxAuthenticator",
        "Evidence",
        "open_authenticator",
    }
)


def imported_modules(statement: str) -> list[str]:
    """:return: every module ``python -X importtime -c STATEMENT`` reports, in import order,
    then any other module in ``sys.modules`` at the end (``importlib.import_module``, which the
    lazy root uses, is not traced by ``-X importtime``)."""
    script = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    modules = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            modules.append(line.rsplit("|", 1)[1].strip())
    assert modules, f"no -X importtime lines in: {out.stderr[:500]}"
    return modules + [m for m in out.stdout.splitlines() if m not in modules]


def heavy_in(modules: list[str]) -> list[str]:
    """:return: the modules of ``modules`` that belong to a package of :data:`HEAVY`."""
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_the_importtime_reader_sees_a_heavy_import() -> None:
    # The guard below would pass vacuously if the parsing found nothing.
    modules = imported_modules("import mie.trust.parse")
    assert "mie.trust.parse" in modules
    assert "asn1crypto" in heavy_in(modules)
    # And so does the sys.modules part, for what importlib loads.
    lazily = imported_modules("import importlib; importlib.import_module('mie.trust.parse')")
    assert "asn1crypto" in heavy_in(lazily)


@pytest.mark.parametrize("module", ["mie.core", "mie"])
def test_a_light_import_loads_no_trust_card_or_asn1_module(module: str) -> None:
    modules = imported_modules(f"import {module}")
    assert module in modules
    assert heavy_in(modules) == []


def test_importing_the_error_types_loads_no_trust_card_or_asn1_module() -> None:
    modules = imported_modules("import mie.errors")
    assert heavy_in(modules) == []


# What an IAM that only verifies must not need: the device side and the hardware stack.
DEVICE = ("mie.auth", "mie.registry", "mie.certcache", "mie.cards", "mie.transport", "smartcard")


def test_the_verifier_side_loads_no_device_code() -> None:
    modules = imported_modules("import mie.verification, mie.result, mie.evidence, mie.trust.login")
    assert "mie.verification" in modules
    assert [m for m in modules if any(m == d or m.startswith(d + ".") for d in DEVICE)] == []


def test_a_public_name_loads_only_what_it_needs() -> None:
    modules = imported_modules("import mie; mie.AuthRequest")
    assert "mie.request" in modules
    assert heavy_in(modules) == []


def test_every_public_name_resolves_from_the_root() -> None:
    assert set(mie.__all__) >= EXPORTED_BEFORE
    assert set(mie.__all__) == set(mie._EXPORTS)
    assert set(dir(mie)) >= set(mie.__all__)
    for name, module in mie._EXPORTS.items():
        value = getattr(mie, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert vars(mie)[name] is value, f"{name} is looked up again on every access"


def _type_checking_imports(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "typing"
        for alias in node.names
    }


def test_the_type_checkers_see_the_same_names_from_the_same_modules() -> None:
    assert mie.__file__ is not None
    assert _type_checking_imports(Path(mie.__file__)) == mie._EXPORTS


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = mie.no_such_name


def test_the_core_exports_the_stack_recipe_and_the_channel_interface() -> None:
    import mie.core

    assert {"SecureChannel", "ExchangeContext", "CommMode", "StackSettings", "ISO7816_LAYERS"} <= (
        set(mie.core.__all__)
    )
    for name in mie.core.__all__:
        assert getattr(mie.core, name) is not None, name


def test_the_verifier_loads_no_desfire_session_until_badge_evidence_arrives() -> None:
    modules = imported_modules("import mie.verification, mie.evidence")
    assert [m for m in modules if m.startswith("mie.desfire")] == []
    # Reading a desfire-session evidence loads its kind, and still no session code.
    statement = "import mie.evidence; mie.evidence.Evidence.from_json({'type': 'desfire-session'})"
    script = f"try:\n    {statement}\nexcept Exception as e:\n    print(type(e).__name__)"
    loaded = imported_modules(script)
    assert "mie.desfire.evidence" in loaded
    assert "mie.desfire.session" not in loaded and "mie.desfire.verify" not in loaded


def test_badge_evidence_loads_the_badge_verifier_on_demand() -> None:
    statement = (
        "import mie.verification\n"
        "try:\n"
        "    mie.verification._verify_badge(None, None, object(), None, None, None)\n"
        "except Exception:\n"
        "    pass"
    )
    assert "mie.desfire.verify" in imported_modules(statement)


# The exception classes of the packages mie.errors exports lazily (issues 9 and 10).
LAZY_ERRORS = {
    "mie.desfire.errors": ("RecordCopiedError", "LegacyCryptoError", "ResponseIntegrityError"),
    "mie.desfire.config": ("BadgeConfigError",),
    "mie.keys.base": ("KeyProviderError", "KeyNotFoundError"),
    "mie.store.errors": (
        "StoreError",
        "WrongSecondFactorError",
        "SecondFactorLockedError",
        "CredentialUnknownError",
        "AlreadyRegisteredError",
        "CloneSuspectedError",
        "CounterUnsupportedError",
    ),
    "mie.relay.errors": ("RelayRefusedError", "RelayClosedError", "RelayTimeoutError"),
    "mie.fido.errors": ("RpIdMismatchError", "TouchTimeoutError", "MetadataStaleError"),
}


def test_mie_errors_exports_the_badge_key_and_store_errors_on_first_use() -> None:
    import mie.errors

    for module, names in LAZY_ERRORS.items():
        for name in names:
            assert name in mie.errors.__all__
            assert getattr(mie.errors, name) is getattr(importlib.import_module(module), name)
    assert set(mie.errors.__all__) <= set(dir(mie.errors))
    modules = imported_modules("import mie.errors")
    lazy = ("mie.desfire", "mie.keys", "mie.store", "mie.relay", "mie.fido")
    assert [m for m in modules if m.startswith(lazy)] == []
    with pytest.raises(AttributeError, match="no_such_error"):
        _ = mie.errors.no_such_error


def test_mie_errors_exports_every_fido2_error_class() -> None:
    import mie.errors
    from mie.fido import errors as fido_errors

    # Every class mie.fido.errors names (its own, the store's four and the core's), none left out.
    for name in fido_errors.__all__:
        assert name in mie.errors.__all__, name
        assert getattr(mie.errors, name) is getattr(fido_errors, name)


# The FIDO2 verifier (issue 10, plan D2): mie, cryptography and the store interface only.
FIDO_CLIENT = ("fido2", "mie.auth", "mie.cards", "mie.transport", "mie.emulation", "smartcard")


def test_the_fido_assertion_verifier_loads_no_python_fido2_or_device_code() -> None:
    modules = imported_modules("import mie.fido.assertion")
    assert "mie.fido.assertion" in modules and "mie.fido.evidence" in modules
    assert [m for m in modules if any(m == d or m.startswith(d + ".") for d in FIDO_CLIENT)] == []
    # No store backend either: the IAM hands its own.
    assert [m for m in modules if m.startswith(("mie.store.sqlite", "mie.store.postgres"))] == []


def test_the_verifier_loads_no_fido_code_until_fido_evidence_arrives() -> None:
    modules = imported_modules("import mie.verification, mie.evidence")
    assert [m for m in modules if m == "mie.fido" or m.startswith("mie.fido.")] == []
    # Reading webauthn-assertion evidence loads its kind, and still neither fido2 nor the
    # verifier (mie.fido.assertion comes with the FidoVerifier the IAM builds).
    statement = (
        "import mie.evidence; mie.evidence.Evidence.from_json({'type': 'webauthn-assertion'})"
    )
    script = f"try:\n    {statement}\nexcept Exception as e:\n    print(type(e).__name__)"
    loaded = imported_modules(script)
    assert "mie.fido.evidence" in loaded
    assert "mie.fido.assertion" not in loaded
    assert [m for m in loaded if m == "fido2" or m.startswith("fido2.")] == []
