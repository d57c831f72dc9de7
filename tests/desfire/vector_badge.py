"""``vectors/desfire-ev3-auth.json``: an emulated EV3 badge's authenticated identity read, made
in process by ``mie auth --json`` through ``mie record``'s machinery (a state that records the
connection it opens), and the badge configuration its replay needs.

The vector is an emulator recording, not a real-card trace: the badge is
:class:`mie.emulation.desfire.EmulatedDesfire`, laid out as an enrolment leaves it
(:func:`tests.desfire.badges.badge_state`), with fixed master keys and enrolment authority. Its
``random`` holds the nonce: RndA is derived from it (plan D4), so a replay sends the same bytes.

To record it again (after a change in the session's exchanges, which makes the committed vector's
replay fail): ``.venv/bin/python -m tests.desfire.vector_badge vectors/desfire-ev3-auth.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mie._cli.state import CliState
from mie._cli.vectors import _run
from mie.core.connection import SmartCardConnection
from mie.core.random import RandomSource, RecordingRandom
from mie.desfire.config import BadgeConfig
from mie.emulation.desfire import EmulatedDesfire
from mie.keys import SoftwareKeyProvider
from tests.desfire.badges import AUTHORITY_KEY, ISSUER, LABELS, badge_state, counter_rng

VECTOR = Path(__file__).resolve().parents[2] / "vectors" / "desfire-ev3-auth.json"
COMMAND = ["auth", "--json"]
"""The recorded command: the configuration comes from ``$MIE_BADGE_CONFIG`` (a vector may not
name a local file) or from ``mie replay FILE -- auth --badge-config FILE --json``."""
DESCRIPTION = (
    "mie auth --json on an emulated DESFire EV3 badge (emulator recording, not a real-card"
    " trace): SelectApplication, AuthenticateEV2First with the UID-read key, GetCardUID,"
    " AuthenticateEV2NonFirst with the record-read key, ReadData of the 176-byte identity"
    " record in FULL mode, then the originality signature (Read_Sig) in FULL mode inside the"
    " session; random UID on; RndA bound to the nonce in random"
)


def write_setup(directory: Path) -> Path:
    """Write the badge configuration the vector was recorded with: ``badge.json``, its
    ``keys.json`` (software master keys, the authority's key) and ``authority.pem``.

    :return: the path of ``badge.json``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    masters = {label: (bytes([0x10 + i]) * 16).hex() for i, label in enumerate(LABELS)}
    scalar = f"{AUTHORITY_KEY.private_numbers().private_value:064x}"
    keys = {"format": "mie-keys/1", "aes128": masters, "ecdsa-p256": {"mie-authority": scalar}}
    key_file = directory / "keys.json"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle)
    pem = AUTHORITY_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (directory / "authority.pem").write_bytes(pem)
    config = {
        "format": "mie-badge/1",
        "keys": {"provider": "software", "file": "keys.json"},
        "authorities": [{"name": ISSUER, "pem": "authority.pem", "test": True}],
        "issuer": ISSUER,
        "originality_keys": ["mie-test"],
    }
    path = directory / "badge.json"
    path.write_text(json.dumps(config))
    return path


class _Counter(RandomSource):
    """Deterministic draws, so that two recordings ask the badge the same questions."""

    def draw(self, name: str, size: int) -> bytes:
        return bytes((0xA0 + i) & 0xFF for i in range(size))


class _BadgeInReader(CliState):
    """``mie record``'s state, whose reader holds the emulated badge."""

    def __init__(self, card: EmulatedDesfire) -> None:
        super().__init__(record=True)
        self.card = card
        self.rng = RecordingRandom(_Counter())

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        return self.open_emulated(self.card)


def record_vector(out: Path, directory: Path) -> None:
    """Record the vector into ``out``, with the configuration written into ``directory``.

    :raises MieError: the authentication failed (nothing is written).
    """
    config_path = write_setup(directory)
    config = BadgeConfig.load(config_path)
    keys = SoftwareKeyProvider.from_file(directory / "keys.json")
    card = EmulatedDesfire(badge_state(cfg=config, keys=keys), product="ev3", rng=counter_rng())
    state = _BadgeInReader(card)
    code = _run([COMMAND[0], "--badge-config", str(config_path), *COMMAND[1:]], state)
    if code != 0:
        raise RuntimeError(f"mie auth exited {code}")
    (recorder,) = state.recorders
    vector = recorder.vector(DESCRIPTION, state.source, state.kind)
    vector.command = list(COMMAND)
    vector.save(out)


def main(argv: list[str]) -> int:
    """``python -m tests.desfire.vector_badge OUT``: record the vector into ``OUT``."""
    out = Path(argv[1]) if len(argv) > 1 else VECTOR
    with tempfile.TemporaryDirectory() as scratch:
        # No user configuration, trust store or CRL cache is read or written.
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
            os.environ[name] = str(Path(scratch) / name.lower())
        os.environ.pop("MIE_BADGE_CONFIG", None)
        record_vector(out, Path(scratch) / "badge")
    print(f"Recorded {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
