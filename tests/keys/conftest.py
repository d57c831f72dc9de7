"""A SoftHSM2 token for the PKCS#11 key-provider tests.

One token per test session, in a temporary directory named by a temporary ``SOFTHSM2_CONF``;
its user PIN is random and known only to the fixture. Tests create their keys with
:meth:`SoftHsm.session` under labels of their own (:func:`label`), before opening a provider:
PKCS#11 login state belongs to the process, so the two sessions must not overlap. Under
``CI=true`` a missing SoftHSM2 or python-pkcs11 fails the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import missing

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "mie-test"  # noqa: S105 (a token label, not a password)


@dataclass(frozen=True)
class SoftHsm:
    """The test token: its module, label and user PIN."""

    module: Path
    token_label: str
    pin: str

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A read-write session logged in as the user, to create keys (closed, so logged out,
        at the end of the block)."""
        import pkcs11

        token = pkcs11.lib(str(self.module)).get_token(token_label=self.token_label)
        with token.open(rw=True, user_pin=self.pin) as session:
            yield session


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A freshly initialised SoftHSM2 token."""
    try:
        import pkcs11
    except ImportError:
        missing("python-pkcs11 is not installed (pip install 'mie[hsm]')")
    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_MODULE.exists():
        missing(f"SoftHSM2 is not installed (softhsm2-util and {SOFTHSM_MODULE})")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    hsm = SoftHsm(SOFTHSM_MODULE, TOKEN_LABEL, secrets.token_hex(8))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(config))
        command = [util, "--init-token", "--free", "--label", TOKEN_LABEL]
        command += ["--so-pin", secrets.token_hex(8), "--pin", hsm.pin]
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            timeout=30,
        )
        # SoftHSM2 reads SOFTHSM2_CONF in C_Initialize: start it again under this one.
        library = pkcs11.lib(str(SOFTHSM_MODULE))
        library.reinitialize()
        yield hsm
        library.finalize()


@pytest.fixture
def label() -> str:
    """A key label no other test uses (the token lives for the whole session)."""
    return f"key-{secrets.token_hex(6)}"
