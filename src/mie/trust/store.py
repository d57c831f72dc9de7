"""Trust anchors: the bundled ANS roots, the operator store, and IGC-Santé name classification.

The package ships the production ``AC RACINE IGC-SANTE ELEMENTAIRE`` root with a pinned SHA-256
fingerprint (``anchors/anchors.json``). Other ANS roots are added by the operator with
``mie trust import`` into a directory (``$MIE_TRUST_DIR``, else ``$XDG_CONFIG_HOME/mie/trust``,
else ``~/.config/mie/trust``). TEST hierarchies are never bundled and are only imported on
explicit request; a chain ending at a TEST anchor always yields ``test_card: true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, unique
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import Store

from mie.core.files import atomic_write
from mie.core.paths import user_dir
from mie.trust.errors import ErrorCode, VerificationError, malformed
from mie.trust.identity import check_readable, extensions_of, is_test_name
from mie.trust.parse import load_certificates

ENV_TRUST_DIR = "MIE_TRUST_DIR"
_IGC_NAME = re.compile(
    r"(?P<test>TEST )?AC (?P<root>RACINE )?IGC-SANTE (?P<gamme>FORT|STANDARD|ELEMENTAIRE)"
    r"(?: (?P<domain>PERSONNES|ORGANISATIONS))?"
)


@unique
class Gamme(Enum):
    """IGC-Santé ranges: FORT (CPS), STANDARD (CPE/CPA), ELEMENTAIRE (software)."""

    FORT = "FORT"
    STANDARD = "STANDARD"
    ELEMENTAIRE = "ELEMENTAIRE"


@unique
class Domain(Enum):
    """IGC-Santé intermediate domains (roots have none)."""

    PERSONNES = "PERSONNES"
    ORGANISATIONS = "ORGANISATIONS"


@dataclass(frozen=True)
class CaClass:
    """What an IGC-Santé CA name says about the CA.

    :param gamme: the range, or ``None`` for a name outside IGC-Santé.
    :param domain: PERSONNES / ORGANISATIONS for intermediates, ``None`` for roots.
    :param root: the name is a ``AC RACINE`` name.
    :param test: the CA is in a TEST hierarchy.
    """

    gamme: Gamme | None
    domain: Domain | None
    root: bool
    test: bool


def imported_as_test(cert: x509.Certificate, kind: str, allow_test: bool) -> bool:
    """Whether an import with ``allow_test`` marks ``cert`` as a TEST anchor.

    ``--test`` allows TEST CAs in a bundle; it never turns a production IGC-Santé root into a
    TEST one (a chain to it would then say ``test_card: true``).

    :param kind: ``anchor`` or ``intermediate``, as :meth:`OperatorStore.check` says.
    """
    info = classify(cert.subject)
    return allow_test and kind == "anchor" and (info.gamme is None or info.test)


def classify(name: x509.Name) -> CaClass:
    """Classify a CA by its IGC-Santé name (``ans-pki.md`` §1.1).

    :param name: the CA subject.
    :return: the classification (``gamme`` is ``None`` for non-IGC-Santé names).
    """
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    match = _IGC_NAME.fullmatch(str(cns[0].value)) if len(cns) == 1 else None
    test = is_test_name(name)
    if match is None:
        return CaClass(None, None, False, test)
    domain = match.group("domain")
    return CaClass(
        Gamme(match.group("gamme")),
        Domain(domain) if domain else None,
        bool(match.group("root")),
        test or bool(match.group("test")),
    )


_DN_NAMES = {NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.TITLE: "T"}


def dn(name: x509.Name) -> str:
    """:return: ``name`` in RFC 4514 form with the short names ANS uses (GN, SN, T)."""
    return name.rfc4514_string(_DN_NAMES)


def fingerprint(cert: x509.Certificate) -> str:
    """:return: the SHA-256 fingerprint as colon-separated lower-case hex (hex is lower case in
    all of mie's output)."""
    return cert.fingerprint(hashes.SHA256()).hex(":")


@dataclass(frozen=True)
class Anchor:
    """A trusted root.

    :param certificate: the anchor certificate.
    :param gamme: IGC-Santé range (from metadata for bundled anchors, else from the name).
    :param domain: IGC-Santé domain, ``None`` for roots.
    :param test: a TEST hierarchy anchor.
    :param source: ``bundled``, ``operator`` or ``explicit`` (given on the command line).
    """

    certificate: x509.Certificate
    gamme: Gamme | None
    domain: Domain | None
    test: bool
    source: str

    @property
    def fingerprint(self) -> str:
        """:return: SHA-256 fingerprint, colon-separated hex."""
        return fingerprint(self.certificate)

    @property
    def name(self) -> str:
        """:return: the subject DN (RFC 4514)."""
        return dn(self.certificate.subject)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, source: str, test: bool = False) -> Anchor:
        """Make an anchor whose gamme/domain/test flag come from the IGC-Santé name.

        :raises VerificationError: ``malformed`` when the certificate cannot be read.
        """
        check_readable(cert, "trust anchor")
        info = classify(cert.subject)
        return cls(cert, info.gamme, info.domain, test or info.test, source)


class TrustStore:
    """An immutable set of trust anchors, plus known intermediates for path building.

    :param anchors: the anchors.
    :param intermediates: CA certificates that may complete a path (never trusted by themselves).
    """

    def __init__(
        self, anchors: Iterable[Anchor], intermediates: Iterable[x509.Certificate] = ()
    ) -> None:
        anchors, intermediates = list(anchors), list(intermediates)
        for anchor in anchors:
            check_readable(anchor.certificate, "trust anchor")
        for cert in intermediates:
            check_readable(cert, "stored intermediate")
        self._anchors = {a.fingerprint: a for a in anchors}
        self._by_certificate = {a.certificate: a for a in self._anchors.values()}
        self._by_subject: dict[bytes, list[Anchor]] = {}
        for anchor in self._anchors.values():
            key = anchor.certificate.subject.public_bytes()
            self._by_subject.setdefault(key, []).append(anchor)
        self.intermediates: tuple[x509.Certificate, ...] = tuple(intermediates)
        self._store = Store([a.certificate for a in self._anchors.values()]) if self else None

    def __len__(self) -> int:
        return len(self._anchors)

    def __iter__(self) -> Iterator[Anchor]:
        return iter(self._anchors.values())

    def __contains__(self, cert: object) -> bool:
        return isinstance(cert, x509.Certificate) and cert in self._by_certificate

    @property
    def store(self) -> Store:
        """:return: the anchors as a :class:`cryptography.x509.verification.Store`."""
        if self._store is None:
            raise VerificationError(ErrorCode.UNTRUSTED, "The trust store is empty")
        return self._store

    def anchor_for(self, cert: x509.Certificate) -> Anchor:
        """:return: the anchor that is ``cert``.

        :raises VerificationError: ``untrusted`` when ``cert`` is not an anchor.
        """
        anchor = self._by_certificate.get(cert)
        if anchor is None:
            raise VerificationError(
                ErrorCode.UNTRUSTED, f"{dn(cert.subject)} is not a trust anchor"
            )
        return anchor

    def anchors_named(self, name: x509.Name) -> list[Anchor]:
        """:return: the anchors whose subject is ``name`` (exact DER match)."""
        return list(self._by_subject.get(name.public_bytes(), []))

    def with_anchors(
        self, anchors: Iterable[Anchor], intermediates: Iterable[x509.Certificate] = ()
    ) -> TrustStore:
        """:return: a new store with more anchors and intermediates."""
        return TrustStore([*self, *anchors], [*self.intermediates, *intermediates])

    @classmethod
    def bundled(cls) -> TrustStore:
        """The anchors shipped with mie, each checked against its pinned fingerprint.

        :raises VerificationError: ``untrusted`` when a bundled file does not match its pin.
        """
        return cls(_bundled_anchors())

    @classmethod
    def default(cls, operator_dir: str | os.PathLike[str] | None = None) -> TrustStore:
        """Bundled anchors plus the operator store.

        :param operator_dir: the operator store (default :func:`operator_directory`).
        """
        operator = OperatorStore(operator_directory() if operator_dir is None else operator_dir)
        return cls([*_bundled_anchors(), *operator.anchors()], operator.intermediates())

    @classmethod
    def from_certificates(
        cls, certs: Sequence[x509.Certificate], *, test: bool = False
    ) -> TrustStore:
        """A store trusting exactly ``certs`` (``source="explicit"``)."""
        return cls(Anchor.from_certificate(c, "explicit", test) for c in certs)


def _bundled_anchors() -> list[Anchor]:
    base = resources.files("mie.trust") / "anchors"
    entries = json.loads((base / "anchors.json").read_text(encoding="utf-8"))
    anchors = []
    for entry in entries:
        (cert,) = load_certificates((base / entry["file"]).read_bytes(), entry["file"])
        if fingerprint(cert) != entry["sha256"]:
            raise VerificationError(
                ErrorCode.UNTRUSTED, f"Bundled anchor {entry['file']} does not match its pin"
            )
        domain = Domain(entry["domain"]) if entry["domain"] else None
        anchors.append(Anchor(cert, Gamme(entry["gamme"]), domain, False, "bundled"))
    return anchors


def operator_directory() -> Path:
    """:return: where ``mie trust import`` keeps anchors: ``$MIE_TRUST_DIR``, else
    ``$XDG_CONFIG_HOME/mie/trust``, else ``~/.config/mie/trust``."""
    return user_dir("config", "trust", env=ENV_TRUST_DIR)


def is_self_issued(cert: x509.Certificate) -> bool:
    """:return: whether subject and issuer are the same name."""
    return cert.subject == cert.issuer


def is_ca(cert: x509.Certificate) -> bool:
    """:return: whether basicConstraints says CA:TRUE.

    :raises VerificationError: ``malformed`` when the extensions do not parse.
    """
    try:
        return extensions_of(cert).get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


class OperatorStore:
    """The operator's anchor directory: ``anchors/<sha256>.pem`` and ``intermediates/…``.

    :param directory: the directory (created on first import), a path or a ``str``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _files(self, kind: str) -> list[Path]:
        folder = self.directory / kind
        return sorted(folder.glob("*.pem")) if folder.is_dir() else []

    def anchors(self) -> list[Anchor]:
        """:return: the imported anchors (TEST ones flagged by a ``.test`` marker or name).

        :raises VerificationError: ``malformed`` naming a stored file that cannot be read or
            does not hold exactly one certificate.
        """
        result = []
        for path in self._files("anchors"):
            marked = path.with_suffix(".test").exists()
            result.append(Anchor.from_certificate(_one_stored(path), "operator", marked))
        return result

    def intermediates(self) -> list[x509.Certificate]:
        """:return: the imported intermediate CA certificates.

        :raises VerificationError: ``malformed`` as for :meth:`anchors`.
        """
        return [_one_stored(p) for p in self._files("intermediates")]

    def check(self, cert: x509.Certificate, *, allow_test: bool = False) -> str:
        """Say where :meth:`add` would store ``cert``, without storing it.

        :param cert: a CA certificate.
        :param allow_test: accept a TEST hierarchy CA.
        :return: ``anchor`` (self-issued) or ``intermediate``.
        :raises ValueError: not a CA, or a TEST CA without ``allow_test``.
        :raises VerificationError: ``malformed`` when the certificate cannot be read.
        """
        check_readable(cert, "CA certificate")
        if not is_ca(cert):
            raise ValueError(f"{dn(cert.subject)} is not a CA certificate")
        if classify(cert.subject).test and not allow_test:
            raise ValueError(f"{dn(cert.subject)} is a TEST CA; pass --test to import it")
        return "anchor" if is_self_issued(cert) else "intermediate"

    def add(self, cert: x509.Certificate, *, allow_test: bool = False) -> str:
        """Store a CA certificate: self-issued ones as anchors, others as intermediates.

        :param cert: a CA certificate.
        :param allow_test: accept a TEST hierarchy CA.
        :return: ``anchor`` or ``intermediate``.
        :raises ValueError: see :meth:`check`.
        """
        (kind,) = self.add_all([cert], allow_test=allow_test)
        return kind

    def add_all(self, certs: Sequence[x509.Certificate], *, allow_test: bool = False) -> list[str]:
        """Store several CA certificates, all or none.

        Every certificate is checked before anything is written; when a write fails, the files
        this call created are removed again (files already present are left as they were).

        :param certs: CA certificates (a bundle, in file order).
        :param allow_test: accept TEST hierarchy CAs.
        :return: ``anchor`` or ``intermediate`` for each certificate.
        :raises ValueError: a certificate is refused (named with its position); nothing is
            stored.
        """
        kinds = []
        for position, cert in enumerate(certs, 1):
            try:
                kinds.append(self.check(cert, allow_test=allow_test))
            except ValueError as e:
                where = f"certificate {position} of {len(certs)}: " if len(certs) > 1 else ""
                raise ValueError(f"{where}{e}; nothing imported") from e
        created: list[Path] = []
        try:
            for cert, kind in zip(certs, kinds, strict=True):
                for path, data in self._entries(cert, kind, allow_test):
                    if path.exists():
                        continue  # same fingerprint, same bytes
                    created.append(path)
                    atomic_write(path, data)
        except BaseException:
            for path in reversed(created):
                with contextlib.suppress(OSError):  # never written, or its folder is gone
                    path.unlink()
            raise
        return kinds

    def _entries(
        self, cert: x509.Certificate, kind: str, allow_test: bool
    ) -> list[tuple[Path, bytes]]:
        folder = self.directory / f"{kind}s"
        stem = fingerprint(cert).replace(":", "")
        entries = [(folder / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))]
        if imported_as_test(cert, kind, allow_test):
            entries.append((folder / f"{stem}.test", b"TEST anchor imported with --test\n"))
        return entries

    def remove(self, fingerprint_prefix: str) -> list[str]:
        """Remove the stored certificates whose fingerprint starts with ``fingerprint_prefix``.

        :return: the removed fingerprints.
        :raises ValueError: the prefix matches nothing.
        """
        wanted = fingerprint_prefix.replace(":", "").lower()
        if len(wanted) < 8:
            raise ValueError("Give at least 8 hex digits of the fingerprint")
        removed = []
        for kind in ("anchors", "intermediates"):
            for path in self._files(kind):
                if path.stem.startswith(wanted):
                    path.unlink()
                    path.with_suffix(".test").unlink(missing_ok=True)
                    removed.append(path.stem)
        if not removed:
            raise ValueError(
                f"No stored certificate has a fingerprint starting {fingerprint_prefix}"
            )
        return removed


def _one_stored(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise malformed(f"{path}: cannot read ({e.strerror})") from e
    certs = load_certificates(data, str(path))
    if len(certs) != 1:
        raise malformed(f"{path}: holds {len(certs)} certificates, the store keeps one per file")
    return certs[0]
