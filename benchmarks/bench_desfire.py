"""Round trips and wall time of a DESFire badge's authenticated identity read.

Blank emulated EV3 badges are enrolled in process by ``mie.desfire.enrol.Enroller`` (keys
diversified by the key provider, identity record signed by the enrolment authority), then read
through an ``EmulatedConnection``: what is timed is mie's work and the badge emulator's, not a
radio. A login is ``mie.login`` on a ``DesfireAuthenticator`` with a ``BadgeVerifier``: the
session on the badge, then the verifier's replay of its transcript, the record signature and,
when configured, the originality signature. Card commands and APDUs are counted on the
connection and compared with the protocol minimum of each scheme (issue 9 plan, D5). The
originality signature is read as the default ``originality_read`` "full" has it: last, inside
the session, its 72-byte protected answer in two frames.

Columns: ``soft`` the keys in process (``SoftwareKeyProvider``); ``hsm`` the same master keys in
a SoftHSM2 token initialised in a temporary ``SOFTHSM2_CONF`` (AN10922 inside the token, through
``mie.keys.pkcs11``; ``null`` when SoftHSM2 or python-pkcs11 is missing); ``relay`` soft keys on
the IAM side, the badge behind ``mie.relay``'s agent (a thread) over a WebSocket on 127.0.0.1, a
relay session per login. The floor is ``DesfireSession`` alone doing the same exchanges with
the keys in hand, nothing verified. One more row, soft keys: the default scheme with the
second-factor PIN (Argon2id at its default cost, SQLite store).
Run: ``.venv/bin/python benchmarks/bench_desfire.py [--runs N]``. The last line printed is one
JSON object: ``round_trips`` (card commands of the default scheme, random UID + originality),
``soft_ms``, ``hsm_ms``, ``relay_ms`` (medians of that scheme), ``floor_ms``, ``pin_ms``, and
the ``commands`` and ``apdus`` of the three schemes in table order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper
from mie.desfire.authenticator import DesfireAuthenticator
from mie.desfire.config import BadgeConfig, KeyLabels, Originality, UidSource
from mie.desfire.enrol import Enroller, EnrolmentRequest
from mie.desfire.journal import Journal
from mie.desfire.record import AuthorityKey
from mie.desfire.session import DesfireSession
from mie.desfire.verify import BadgeVerifier
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeState
from mie.keys.base import KeyProvider
from mie.keys.software import SoftwareKeyProvider
from mie.policy import AssuranceLevel
from mie.relay.agent import Agent
from mie.relay.iam import RelayServer
from mie.request import AuthRequest, StaticPin
from mie.result import AuthResult
from mie.store.secondfactor import SecondFactor
from mie.store.sqlite import SqliteStore
from mie.verification import login

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "mie-bench"  # noqa: S105 (a token label, not a password)
ORIGIN = "https://iam.example"
ID_NAT = "810100099877"  # an RPPS number (Luhn-valid) of the TEST range
ISSUER = "CH Bench"
PIN = "4826"
LABELS = KeyLabels()
MASTER_LABELS = (LABELS.picc, LABELS.app, LABELS.uid_read, LABELS.read)
GET_DATA_UID = bytes.fromhex("FFCA000000")
# An empty AF frame fetches the next frame of a chained answer: part of the command before it.
CONTINUATION = bytes.fromhex("90AF000000")


@dataclass(frozen=True)
class Scheme:
    """One configured scheme: a row of the table.

    :param name: the row's name.
    :param uid_source: where the real UID comes from.
    :param random_uid: the badge shows a random UID.
    :param originality: whether the originality signature is checked.
    :param minimum: the protocol minimum, in card commands (plan D5).
    """

    name: str
    uid_source: UidSource
    random_uid: bool
    originality: Originality
    minimum: int


SCHEMES = (
    Scheme("static UID", UidSource.ANTICOLLISION, False, Originality.OFF, 4),
    Scheme("random UID", UidSource.GET_CARD_UID, True, Originality.OFF, 7),
    Scheme("random UID + originality", UidSource.GET_CARD_UID, True, Originality.REQUIRED, 8),
)
DEFAULT = SCHEMES[-1]


class Counting(SmartCardConnectionWrapper):
    """Counts what crosses a connection: every APDU, and the card commands among them (not the
    empty AF frames that fetch the rest of a chained answer, nor the reader's GET DATA)."""

    def __init__(self, inner: SmartCardConnection) -> None:
        super().__init__(inner)
        self.apdus = 0
        self.commands = 0

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus += 1
        if bytes(apdu) not in (CONTINUATION, GET_DATA_UID):
            self.commands += 1
        return super().send_and_receive(apdu)


@dataclass(frozen=True, order=True)
class Counts:
    """Card commands and APDUs of one login."""

    commands: int
    apdus: int


@dataclass(frozen=True)
class Figure:
    """One cell of the table: the counts and the median time."""

    counts: Counts
    ms: float


class Deployment:
    """The master keys, the enrolment authority and the badge configurations of one hospital."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.masters = {label: secrets.token_bytes(16) for label in MASTER_LABELS}
        authority = ec.generate_private_key(ec.SECP256R1())
        self.soft = SoftwareKeyProvider(self.masters, {LABELS.authority: authority})
        self.authority = AuthorityKey.of(authority.public_key(), ISSUER, test=True)
        self.second_factor = SecondFactor(SqliteStore(work / "mie.db"))

    def config(self, scheme: Scheme) -> BadgeConfig:
        """:return: the badge configuration of ``scheme`` (the emulator's originality key)."""
        return BadgeConfig(
            authorities=(self.authority,),
            issuer=ISSUER,
            uid_source=scheme.uid_source,
            random_uid=scheme.random_uid,
            originality=scheme.originality,
            originality_keys=("mie-test",),
        )

    def enrol(self, scheme: Scheme, *, pin: str | None = None) -> EmulatedDesfire:
        """:return: a blank emulated badge enrolled for ``scheme`` (and ``pin``)."""
        uid = b"\x04" + secrets.token_bytes(6)
        card = EmulatedDesfire(BadgeState.blank(uid))
        with Journal.open(self.work / f"journal-{uid.hex()}.csv") as journal:
            enroller = Enroller(
                self.config(scheme), self.soft, journal=journal, second_factor=self.second_factor
            )
            request = EnrolmentRequest(ID_NAT, pin=pin)
            enroller.enrol(EmulatedConnection(card), request, row=uid.hex())
        return card

    def floor_keys(self, card: EmulatedDesfire, scheme: Scheme) -> tuple[bytes, bytes]:
        """:return: the badge's UID-read key (1) and record-read key (2)."""
        config = self.config(scheme)
        return (
            self.soft.diversify(LABELS.uid_read, config.uid_read_input()),
            self.soft.diversify(LABELS.read, config.diversification_input(card.state.uid)),
        )


def floor(card: EmulatedDesfire, scheme: Scheme, keys: tuple[bytes, bytes]) -> Counting:
    """The same exchanges with ``DesfireSession`` alone, the keys in hand, nothing checked."""
    connection = Counting(EmulatedConnection(card))
    session = DesfireSession(connection)
    session.select_application(DEFAULT_CONFIG.aid)
    if scheme.uid_source is UidSource.ANTICOLLISION:
        session.reader_uid()
        session.authenticate_ev2_first(2, keys[1])
    else:
        session.authenticate_ev2_first(1, keys[0])
        session.get_card_uid()
        session.authenticate_ev2_non_first(2, keys[1])
    session.read_data(1, mode=CommMode.FULL)
    if scheme.originality is not Originality.OFF:
        # originality_read "full" (the default): last, inside the session, enciphered.
        session.read_signature(mode=CommMode.FULL)
    return connection


DEFAULT_CONFIG = BadgeConfig()


def local_login(
    card: EmulatedDesfire,
    config: BadgeConfig,
    keys: KeyProvider,
    *,
    second_factor: SecondFactor | None = None,
) -> Counting:
    """``mie.login`` of the badge in this process; the level checked.

    :return: the counting connection, after the login.
    """
    connection = Counting(EmulatedConnection(card))
    authenticator = DesfireAuthenticator(connection, config, keys=keys)
    badges = BadgeVerifier(config, keys=keys, second_factor=second_factor)
    user = StaticPin(PIN) if second_factor is not None else None
    result = login(authenticator, AuthRequest.new(ORIGIN), user=user, verifier=None, badges=badges)
    wanted = AssuranceLevel.SUBSTANTIAL if second_factor is not None else AssuranceLevel.LOW
    check(result, wanted)
    return connection


def relay_login(
    server: RelayServer, card: EmulatedDesfire, config: BadgeConfig, keys: KeyProvider
) -> Counting:
    """The IAM's login over the relay: a session for a fresh nonce, the agent (a thread here,
    the card in its reader) connecting to it, ``mie.login`` over the ``RelayConnection``, and the
    outcome sent back to the agent. The counts are the IAM's (the agent's own GetVersion
    probe, one more APDU at the card, is not in them).

    :return: the counting connection on the IAM side, after the login.
    """
    request = AuthRequest.new(ORIGIN)
    pending = server.expect(request, timeout=30)
    agent = Agent(
        pending.url, origin=ORIGIN, open_connection=lambda reader: EmulatedConnection(card)
    )
    outcome: list[AuthResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(agent.run())
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    relay = pending.connection(10)
    connection = Counting(relay)
    authenticator = DesfireAuthenticator(connection, config, keys=keys)
    badges = BadgeVerifier(config, keys=keys)
    result = login(authenticator, request, user=None, verifier=None, badges=badges)
    relay.finish(result)
    thread.join(10)
    check(result, AssuranceLevel.LOW)
    if thread.is_alive() or not outcome or not isinstance(outcome[0], AuthResult):
        raise SystemExit(f"The relay agent did not end with the outcome: {outcome}")
    return connection


def check(result: AuthResult, level: AssuranceLevel) -> None:
    """:raises SystemExit: the login is not valid at ``level`` with the enrolled identity."""
    if not result.valid or result.level is not level or result.identity is None:
        raise SystemExit(f"Unexpected login result: {result.to_json()}")
    if result.identity.id_nat != ID_NAT:
        raise SystemExit(f"Unexpected identity: {result.identity.id_nat}")


def measure(card: EmulatedDesfire, run: Callable[[], Counting], runs: int) -> Figure:
    """Run ``run`` ``runs`` times, the badge taken out of the field and back in between (a new
    random UID each time, no session left open).

    :return: the counts (the same on every run) and the median time in ms.
    :raises SystemExit: the counts changed between runs.
    """
    counts: set[Counts] = set()
    times: list[float] = []
    for _ in range(runs):
        card.power_off()
        card.power_on()
        start = time.perf_counter()
        connection = run()
        times.append((time.perf_counter() - start) * 1000)
        counts.add(Counts(connection.commands, connection.apdus))
    if len(counts) != 1:
        raise SystemExit(f"The counts changed between runs: {sorted(counts)}")
    return Figure(counts.pop(), statistics.median(times))


@contextlib.contextmanager
def softhsm(deployment: Deployment, work: Path) -> Iterator[KeyProvider | str]:
    """A SoftHSM2 token in a temporary ``SOFTHSM2_CONF`` holding the deployment's master keys
    (non-extractable, sensitive), opened as a ``Pkcs11KeyProvider``.

    :return: the provider, or the reason there is none.
    """
    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_MODULE.exists():
        yield f"SoftHSM2 is not installed (softhsm2-util and {SOFTHSM_MODULE})"
        return
    try:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass
    except ImportError:
        yield "python-pkcs11 is not installed (pip install 'mie[hsm]')"
        return
    from mie.keys.pkcs11 import Pkcs11KeyProvider

    (work / "tokens").mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {work / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    try:
        init = [util, "--init-token", "--free", "--label", TOKEN, "--pin", pin]
        subprocess.run(
            [*init, "--so-pin", secrets.token_hex(8)], check=True, capture_output=True, timeout=30
        )
        token = pkcs11.lib(str(SOFTHSM_MODULE)).get_token(token_label=TOKEN)
        with token.open(rw=True, user_pin=pin) as session:
            for label, value in deployment.masters.items():
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE: value,
                        Attribute.LABEL: label,
                        Attribute.TOKEN: True,
                        Attribute.SIGN: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                    }
                )
        provider = Pkcs11KeyProvider(SOFTHSM_MODULE, TOKEN, lambda: pin)
        try:
            yield provider
        finally:
            provider.close()
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def measure_row(
    deployment: Deployment,
    scheme: Scheme,
    card: EmulatedDesfire,
    server: RelayServer,
    hsm: KeyProvider | str,
    runs: int,
) -> dict[str, Figure | None]:
    """:return: the floor, soft, hsm (``None`` without a token) and relay figures of a row."""
    config = deployment.config(scheme)
    keys = deployment.floor_keys(card, scheme)
    soft = deployment.soft
    return {
        "floor": measure(card, lambda: floor(card, scheme, keys), runs),
        "soft": measure(card, lambda: local_login(card, config, soft), runs),
        "hsm": (
            None
            if isinstance(hsm, str)
            else measure(card, lambda: local_login(card, config, hsm), runs)
        ),
        "relay": measure(card, lambda: relay_login(server, card, config, soft), runs),
    }


def same_counts(name: str, figures: list[Figure | None]) -> Counts:
    """:return: the counts every column of a row agrees on.

    :raises SystemExit: two columns counted otherwise.
    """
    found = {f.counts for f in figures if f is not None}
    if len(found) != 1:
        raise SystemExit(f"{name}: the columns count differently: {sorted(found)}")
    return found.pop()


def ms(figure: Figure | None) -> float | None:
    return None if figure is None else round(figure.ms, 2)


def shown(figure: Figure | None) -> str:
    return f"{'null':>8}" if figure is None else f"{figure.ms:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    runs = args.runs
    rows: dict[str, dict[str, Figure | None]] = {}
    with tempfile.TemporaryDirectory(prefix="mie-bench-desfire-") as tmp:
        work = Path(tmp)
        deployment = Deployment(work)
        cards = {s.name: deployment.enrol(s) for s in SCHEMES}
        hsm_work = work / "hsm"
        hsm_work.mkdir()
        with softhsm(deployment, hsm_work) as hsm, RelayServer() as server:
            note = hsm if isinstance(hsm, str) else None
            for scheme in SCHEMES:
                rows[scheme.name] = measure_row(
                    deployment, scheme, cards[scheme.name], server, hsm, runs
                )
            pin_card = deployment.enrol(DEFAULT, pin=PIN)
            pin_config = deployment.config(DEFAULT)
            factor = deployment.second_factor
            pin = measure(
                pin_card,
                lambda: local_login(pin_card, pin_config, deployment.soft, second_factor=factor),
                runs,
            )
    counts = {name: same_counts(name, list(row.values())) for name, row in rows.items()}
    print(
        f"{'scheme':30} {'commands':>8} {'minimum':>7} {'APDUs':>5} "
        f"{'floor ms':>8} {'soft ms':>8} {'hsm ms':>8} {'relay ms':>8}"
    )
    for scheme in SCHEMES:
        row, count = rows[scheme.name], counts[scheme.name]
        print(
            f"{scheme.name:30} {count.commands:8d} {scheme.minimum:7d} {count.apdus:5d} "
            + " ".join(shown(row[c]) for c in ("floor", "soft", "hsm", "relay"))
        )
    print(
        f"{DEFAULT.name + ' + PIN':30} {pin.counts.commands:8d} {DEFAULT.minimum:7d} "
        f"{pin.counts.apdus:5d} {'':8} {pin.ms:8.2f}   (Argon2id 64 MiB, 3 passes; soft keys)"
    )
    if note:
        print(f"hsm: {note}", file=sys.stderr)
    default = rows[DEFAULT.name]
    print(
        json.dumps(
            {
                "round_trips": counts[DEFAULT.name].commands,
                "soft_ms": ms(default["soft"]),
                "hsm_ms": ms(default["hsm"]),
                "relay_ms": ms(default["relay"]),
                "floor_ms": ms(default["floor"]),
                "pin_ms": round(pin.ms, 2),
                "commands": [counts[s.name].commands for s in SCHEMES],
                "apdus": [counts[s.name].apdus for s in SCHEMES],
            }
        )
    )


if __name__ == "__main__":
    main()
