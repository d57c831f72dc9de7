"""What the fuzz targets share: the TEST PKI, card credentials kept across processes, emulated
cards, sessions recorded in process, a TEST verifier, and the data of ``../shared/data``.

Everything expensive (key generation, key loading, recording sessions) happens once per process,
never per input. Card credentials are written to the work directory so the runner (which makes
the seeds) and the fuzzing processes (which judge them) use the same keys.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mie.auth import CpxAuthenticator, verify_signature
from mie.cards.demo import DemoSession
from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper, Transport
from mie.core.errors import SignatureInvalidError
from mie.emulation.base import EmulatedConnection
from mie.emulation.cpx import (
    CPE,
    CPS3,
    CPS3_CL,
    CPS4_KEY_AUT,
    CPS4_KEY_SIG,
    FID_CERT_AUT,
    FID_CERT_SIG,
    KEY_REF_AUT,
    KEY_REF_SIG,
    IasEccCard,
    build_chipdoc_card,
    build_ias_ecc_card,
)
from mie.emulation.iso7816 import EF, Iso7816Card, demo_card
from mie.emulation.testpki import CardCredentials, Gamme, Issued, TestPki, parse_identity
from mie.evidence import X509SignatureEvidence
from mie.request import AuthRequest, StaticPin
from mie.result import AuthResult
from mie.trust import (
    Anchor,
    CrlIndex,
    CrlSet,
    RevocationMode,
    TrustStore,
    Usage,
    Verifier,
    VerifierBuilder,
)
from mie.verification import login
from tests.fuzz.harness import OracleViolation

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
# One fixed request: the emulator then signs the same bytes for every input (MemoKey).
REQUEST = AuthRequest(bytes(range(32)))
PIN = "1234"
SERIALS = {"cps3": "2800000011", "cps3-cl": "2800000012", "cpe": "2800000013"}
SERIALS |= {"cps4": "2900000011", "psi": "2900000012"}
CARD_TYPES = {"cps3": "CPS", "cps3-cl": "CPS", "cpe": "CPE", "cps4": "CPS", "psi": "PSI"}
CPX_KINDS = tuple(SERIALS)
ATRS: dict[str, bytes] = {}


class MemoKey:
    """An RSA private key whose signatures are remembered: the emulator signs the same challenge
    for every input of a session target, and one RSA signature costs more than a whole session."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.key_size = key.key_size
        self._memo: dict[tuple[bytes, str, str], bytes] = {}

    def sign(self, data: bytes, pad: Any, algorithm: Any) -> bytes:
        name = getattr(algorithm, "name", None) or type(algorithm).__name__
        memo = (bytes(data), type(pad).__name__, str(getattr(algorithm, "_algorithm", name)))
        if memo not in self._memo:
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[memo] = self.key.sign(data, pad, algorithm)
        return self._memo[memo]

    def public_key(self) -> rsa.RSAPublicKey:
        return self.key.public_key()


class RawRecorder(SmartCardConnectionWrapper):
    """Records raw commands and responses (unlike the vector recorder, PIN data in clear: these
    are seeds of a run, made with the TEST PIN, never written to the repository)."""

    def __init__(self, inner: SmartCardConnection) -> None:
        super().__init__(inner)
        self.exchanges: list[tuple[bytes, bytes]] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self.inner.send_and_receive(apdu)
        self.exchanges.append((bytes(apdu), data + sw.to_bytes(2, "big")))
        return data, sw


@dataclass(eq=False)
class Context:
    """Shared state of the fuzz targets of one process.

    :param work: a directory kept between runs (TEST PKI, card credentials).
    :param pki_dir: where the TEST PKI is (default: in ``work``).
    """

    work: Path
    pki_dir: Path | None = None

    @functools.cached_property
    def pki(self) -> TestPki:
        """:return: the TEST PKI of the work directory (created on first use)."""
        return TestPki.load(self.pki_dir or self.work / "testpki")

    def credentials(self, kind: str) -> CardCredentials:
        """:return: the credentials of the emulated card ``kind``, the same in every process."""
        return _credentials(self, kind)

    def card(self, kind: str) -> Iso7816Card:
        """Build a powered-on emulated card whose keys and certificates are :meth:`credentials`.

        :param kind: ``demo`` or one of :data:`CPX_KINDS`.
        """
        if kind == "demo":
            return demo_card(pin=PIN)
        identity = parse_identity(None, CARD_TYPES[kind])
        serial = SERIALS[kind]
        card: IasEccCard
        if kind in ("cps4", "psi"):
            label = "PSIv1" if kind == "psi" else "CPS4v1"
            card = build_chipdoc_card(identity, self.pki, pin=PIN, serial=serial, label=label)
            references = (CPS4_KEY_AUT | 0x80, CPS4_KEY_SIG | 0x80)
        else:
            profile = {"cps3": CPS3, "cps3-cl": CPS3_CL, "cpe": CPE}[kind]
            card = build_ias_ecc_card(profile, identity, self.pki, pin=PIN, serial=serial)
            references = (KEY_REF_AUT, KEY_REF_SIG)
        _install(card, self.credentials(kind), references)
        return card

    def transport(self, kind: str) -> Transport:
        """:return: how the card ``kind`` is read."""
        return Transport.CONTACTLESS if kind == "cps3-cl" else Transport.CONTACT

    def atr(self, kind: str) -> bytes:
        """:return: the ATR of the emulated card ``kind``."""
        if kind not in ATRS:
            ATRS[kind] = self.card(kind).atr
        return ATRS[kind]

    @functools.cached_property
    def store(self) -> TrustStore:
        """:return: a store trusting the TEST roots, with the TEST intermediates."""
        roots = [Anchor.from_certificate(i.certificate, "explicit", True) for i in self._roots()]
        return TrustStore(roots, [i.certificate for i in self.pki.intermediates.values()])

    def _roots(self) -> list[Issued]:
        return list(self.pki.roots.values())

    @functools.cached_property
    def crls(self) -> CrlSet:
        """:return: fresh CRLs and ARLs of every TEST CA (nothing revoked)."""
        return CrlSet.of(CrlIndex(crl, "fuzz") for crl in self.crl_list)

    @functools.cached_property
    def crl_list(self) -> list[x509.CertificateRevocationList]:
        """:return: the CRLs behind :attr:`crls`."""
        at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        return [
            self.pki.crl(gamme, this_update=at, next_update=dt.timedelta(days=30), authority=a)
            for gamme in (Gamme.FORT, Gamme.STANDARD)
            for a in (False, True)
        ]

    def verifier(self, **options: Any) -> Verifier:
        """:return: a verifier for authentication against :attr:`store` and :attr:`crls`."""
        builder = VerifierBuilder().store(self.store).usage(Usage.AUTH)
        builder = builder.revocation(options.pop("revocation", RevocationMode.HARD))
        if "crl_cache" in options:
            builder = builder.crl_cache(options.pop("crl_cache"))
        else:
            builder = builder.crls(self.crls)
        if options.pop("ocsp", False):
            builder = builder.ocsp()
        return builder.build()

    @functools.cached_property
    def checker(self) -> Verifier:
        """:return: the verifier of the logins the CPx session targets run."""
        return self.verifier()

    def record_session(self, kind: str) -> list[tuple[bytes, bytes]]:
        """Run identify then authenticate (or the demo) on the emulated card, recording it.

        :return: the raw ``(command, response)`` exchanges.
        """
        return _recorded(self, kind)


@functools.cache
def _credentials(context: Context, kind: str) -> CardCredentials:
    directory = context.work / "cards" / kind
    try:
        return _load_credentials(directory, context)
    except (OSError, ValueError):
        pass
    identity = parse_identity(None, CARD_TYPES[kind])
    credentials = context.pki.issue_card(identity, SERIALS[kind])
    directory.mkdir(parents=True, exist_ok=True)
    for name, issued in (("auth", credentials.authentication), ("sign", credentials.signature)):
        (directory / f"{name}.pem").write_bytes(issued.certificate_pem())
        key = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{name}.key").write_bytes(key)
    return credentials


def _load_credentials(directory: Path, context: Context) -> CardCredentials:
    loaded = []
    for name in ("auth", "sign"):
        certificate = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
        loaded.append(Issued(certificate, cast(rsa.RSAPrivateKey, key)))
    # The certificates must still chain to the TEST PKI of this work directory.
    issuer = next(
        i
        for i in context.pki.intermediates.values()
        if i.certificate.subject == loaded[0].certificate.issuer
    )
    loaded[0].certificate.verify_directly_issued_by(issuer.certificate)
    chain = [issuer.certificate]
    return CardCredentials(loaded[0], loaded[1], chain)


def _install(card: IasEccCard, credentials: CardCredentials, references: tuple[int, int]) -> None:
    aut, sig = references
    card.keys[aut] = cast(rsa.RSAPrivateKey, MemoKey(credentials.authentication.key))
    card.keys[sig] = cast(rsa.RSAPrivateKey, MemoKey(credentials.signature.key))
    contents = {
        FID_CERT_AUT: credentials.authentication.certificate.public_bytes(
            serialization.Encoding.DER
        ),
        FID_CERT_SIG: credentials.signature.certificate.public_bytes(serialization.Encoding.DER),
    }
    for df in card.mf.walk():
        for child in df.children:
            if isinstance(child, EF) and child.fid in contents:
                child.data = contents[child.fid]
    card.credentials = credentials


def run_session(
    connection: SmartCardConnection, kind: str, verifier: Verifier | None
) -> Callable[[], object]:
    """:return: a function running what a login does on ``kind``: identify, then
    :func:`mie.verification.login` (with ``verifier``, or unchecked)."""

    def cpx() -> object:
        authenticator = CpxAuthenticator(connection, chain_checked=verifier is not None)
        identification = authenticator.identify()
        if kind == "cps3-cl":
            return identification
        result = login(authenticator, REQUEST, user=StaticPin(PIN), verifier=verifier)
        check_login(result)
        return result

    def demo() -> object:
        return DemoSession(connection).run(PIN)

    return demo if kind == "demo" else cpx


def check_login(result: AuthResult) -> None:
    """What a successful login must show, whatever the card answered: the evidence is bound to
    the request and verifies on its own (the signature over the challenge with the leaf's key),
    and the serial reported is the one the certificate names (issue 7 item 7).

    :raises OracleViolation: a success that does not hold.
    """
    evidence = result.evidence
    if (
        not isinstance(evidence, X509SignatureEvidence)
        or (evidence.nonce, evidence.origin) != (REQUEST.nonce, REQUEST.origin)
        or evidence.challenge != REQUEST.challenge
        or not evidence.chain
    ):
        raise OracleViolation("a login succeeded without evidence of this request")
    leaf = x509.load_der_x509_certificate(evidence.chain[0])
    try:
        verify_signature(leaf, evidence.challenge, evidence.signature)
    except SignatureInvalidError as e:
        raise OracleViolation("a login succeeded with a signature that does not verify") from e
    named = getattr(result.identity, "card_serial", None)
    serial = result.authenticator.serial if result.authenticator is not None else None
    if serial is not None and named is not None and not named.endswith("/" + serial):
        raise OracleViolation(f"a login reports serial {serial}, the certificate names {named}")


@functools.cache
def _recorded(context: Context, kind: str) -> list[tuple[bytes, bytes]]:
    card = context.card(kind)
    recorder = RawRecorder(EmulatedConnection(card, context.transport(kind)))
    run_session(recorder, kind, context.checker if kind != "demo" else None)()
    return recorder.exchanges
