"""Issue 9's Done-when through pcscd + vpcd: `mie emulate desfire --state S` hosts the badge on
vpcd as a contactless card, and `mie desfire enroll|info` and `mie auth` reach it through pcscd,
each in its own process with HOME and every MIE_* variable scrubbed. Run under
`flock -o /tmp/mie-pcsc.lock` (the vpcd ports are shared machine-wide)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import READER0, Pcscd, emulator_process
from tests.integration.test_desfire_nfc import Mie
from tests.unit.test_cli_desfire import write_badge_setup

pytestmark = pytest.mark.pcsc

UID = bytes.fromhex("04a1b2c3d4e5f6")


@pytest.fixture
def mie(tmp_path: Path) -> Mie:
    return Mie(tmp_path / "home")


def test_info_of_a_blank_badge_through_pcscd(pcscd: Pcscd, tmp_path: Path, mie: Mie) -> None:
    setup = write_badge_setup(tmp_path / "config")
    with emulator_process("desfire", "--state", str(tmp_path / "badge.json"), "--uid", UID.hex()):
        out = mie(
            "desfire", "info", "--reader", READER0, "--badge-config", str(setup.config), "--json"
        )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["uid"], info["product"], info["random_uid"]) == (UID.hex(), "EV3", False)
    assert info["originality"] == {"key": "mie test badge", "verified": True}
    assert info["applications"] == [] and info["mie_application"] is False
