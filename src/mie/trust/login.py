"""The verifier a login uses, and the report of a verified certificate, shared by ``mie auth``,
``mie verify-cert``, ``mie verify-evidence`` and library callers.

:func:`login_verifier` builds a :class:`~mie.trust.Verifier` from the default trust store
(bundled and operator anchors), extra anchor, intermediate and CRL files, and the CRL cache
directory (:func:`crl_directory`), which downloads missing or stale CRLs unless told not to.
:func:`certificate_report` turns a verified path and what was proven into the identity, level
and revocation a result carries; it holds the one rule that a chain ending at a TEST anchor
makes the identity a TEST card.

Import these from :mod:`mie.trust.login` (:mod:`mie.trust` does not load :mod:`mie.policy`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from mie.core.files import NotARegularInputError, read_regular_file
from mie.core.paths import user_dir
from mie.policy import AssuranceLevel, LevelPolicy, Proof, decide
from mie.trust.cache import CrlCache, OfflineCrlCache, ReadOnlyCrlCache
from mie.trust.crl import CrlIndex, CrlSet, RevocationStatus
from mie.trust.errors import malformed
from mie.trust.identity import Identity, identity_from_certificate
from mie.trust.parse import MAX_CERTIFICATE_FILE_BYTES, load_certificates, max_crl_bytes
from mie.trust.store import Anchor, TrustStore
from mie.trust.verify import RevocationMode, Usage, VerificationResult, Verifier, VerifierBuilder

ENV_CRL_DIR = "MIE_CRL_DIR"
REVOCATION_BUDGET_S = 10.0
"""Default time all the CRL/OCSP downloads of one login may take together, seconds."""

PathLike = str | os.PathLike[str]


def crl_directory() -> Path:
    """:return: the CRL cache directory: ``$MIE_CRL_DIR``, else ``$XDG_CACHE_HOME/mie/crl``,
    else ``~/.cache/mie/crl``."""
    return user_dir("cache", "crl", env=ENV_CRL_DIR)


def read_input(path: PathLike) -> bytes:
    """Read a certificate or CRL file, never more than the larger of the two size limits (the
    parser then applies the one of its kind).

    :return: the bytes of ``path``.
    :raises VerificationError: ``malformed`` naming the file: unreadable, or over the limit.
    """
    limit = max(max_crl_bytes(), MAX_CERTIFICATE_FILE_BYTES)
    try:
        data = read_regular_file(path, limit)
    except NotARegularInputError as e:
        raise malformed(f"{os.fspath(path)}: cannot read (not a regular file)") from e
    except OSError as e:
        raise malformed(f"{os.fspath(path)}: cannot read ({e.strerror})") from e
    if len(data) > limit:
        raise malformed(f"{os.fspath(path)}: larger than {limit} bytes")
    return data


def load_trust_files(
    trust: Iterable[PathLike] = (),
    intermediates: Iterable[PathLike] = (),
    crls: Iterable[PathLike] = (),
) -> tuple[list[Anchor], list[x509.Certificate], CrlSet]:
    """Read anchor, intermediate CA and CRL files, each strictly.

    :param trust: files of extra trust anchors (PEM, DER or PKCS#7).
    :param intermediates: files of untrusted CA certificates that may complete a path.
    :param crls: CRL or delta CRL files (PEM or DER).
    :return: the anchors (``source="explicit"``), the intermediates and the CRLs.
    :raises VerificationError: ``malformed`` naming the file that cannot be read.
    """
    anchors = [
        Anchor.from_certificate(c, "explicit")
        for f in trust
        for c in load_certificates(read_input(f), os.fspath(f))
    ]
    pool = [c for f in intermediates for c in load_certificates(read_input(f), os.fspath(f))]
    crl_set = CrlSet.of(CrlIndex.from_bytes(read_input(f), os.fspath(f)) for f in crls)
    return anchors, pool, crl_set


def login_verifier(
    *,
    trust: Iterable[PathLike] = (),
    intermediates: Iterable[PathLike] = (),
    crls: Iterable[PathLike] = (),
    usage: Usage = Usage.AUTH,
    revocation: RevocationMode = RevocationMode.HARD,
    at: dt.datetime | None = None,
    cache: CrlCache | None = None,
    download: bool = True,
    timeout: float = REVOCATION_BUDGET_S,
    store: TrustStore | None = None,
) -> Verifier:
    """The verifier of a login: default store plus the given files, and the CRL cache.

    :param trust: extra trust anchor files.
    :param intermediates: extra intermediate CA files (kept in the store, for path building).
    :param crls: CRL files, used before anything cached or downloaded: a certificate they
        answer for (a current CRL of its issuer revokes it or covers it) gets no download, as
        with a cached CRL that is not stale; only the ones they leave unknown are fetched.
    :param usage: what the end-entity key is for (a login: ``AUTH``).
    :param revocation: hard (unknown status fails) or soft.
    :param at: verify at this aware time instead of now.
    :param cache: the CRL cache to use (default: one in :func:`crl_directory`); given without
        a budget, it gets ``timeout`` as its budget.
    :param download: fetch missing or stale CRLs from their distribution points; ``False``
        reads the cache only (:class:`~mie.trust.cache.ReadOnlyCrlCache`, the default cache
        then) and never writes it; a given cache that never downloads
        (:class:`~mie.trust.cache.OfflineCrlCache`) is used as it is, any other is made
        read-only.
    :param timeout: seconds all the downloads of one verification may take together.
    :param store: the trust store to extend (default :meth:`TrustStore.default`).
    :return: the verifier.
    :raises VerificationError: ``malformed`` for a file that cannot be read.
    :raises ValueError: ``at`` is not timezone-aware.
    """
    anchors, pool, crl_set = load_trust_files(trust, intermediates, crls)
    base = store if store is not None else TrustStore.default()
    if cache is None:
        kind = CrlCache if download else ReadOnlyCrlCache
        cache = kind(crl_directory())
    elif not download and not isinstance(cache, OfflineCrlCache):
        cache = ReadOnlyCrlCache(cache.directory, cache.timeout, cache.max_bytes, cache.budget)
    if cache.budget is None:
        cache = dataclasses.replace(cache, budget=timeout)
    builder = (
        VerifierBuilder()
        .store(base.with_anchors(anchors, pool))
        .usage(usage)
        .revocation(revocation)
        .crls(crl_set)
        .crl_cache(cache)
    )
    return builder.time(at).build() if at is not None else builder.build()


@dataclass(frozen=True)
class CertificateReport:
    """What a verified certificate says, for a result.

    :param identity: the holder (``test_card`` also set when the path ends at a TEST anchor).
    :param level: the level the proof grants, or ``None``.
    :param revocation: ``GOOD``, or ``UNKNOWN`` under soft revocation.
    :param reasons: why the level is what it is (:attr:`mie.policy.LevelDecision.reasons`).
    :param revocation_details: one line per certificate checked.
    :param chain_der: the verified path in DER, leaf first, anchor last.
    :param subjects: the subject DNs of the path, leaf first.
    :param anchor: the trust anchor that ends the path.
    """

    identity: Identity
    level: AssuranceLevel | None
    revocation: RevocationStatus
    reasons: tuple[str, ...]
    revocation_details: tuple[str, ...]
    chain_der: tuple[bytes, ...]
    subjects: tuple[str, ...]
    anchor: Anchor


def certificate_report(
    result: VerificationResult, proof: Proof, policy: LevelPolicy | None = None
) -> CertificateReport:
    """Identity, level and revocation of a verified path.

    :param result: the verified path.
    :param proof: what was proven with it (its ``chain`` is taken to be ``result``).
    :param policy: the level policy (default :class:`~mie.policy.LevelPolicy`).
    :return: the report.
    :raises VerificationError: ``malformed`` when the leaf holds no valid identity; ``policy``
        when a configured policy OID is missing.
    """
    identity = identity_from_certificate(result.leaf)
    # A TEST anchor makes a TEST card, whatever the certificate itself says.
    if result.anchor.test and not identity.test_card:
        identity = dataclasses.replace(identity, test_card=True)
    decision = decide(dataclasses.replace(proof, chain=result), policy)
    return CertificateReport(
        identity=identity,
        level=decision.level,
        revocation=result.revocation,
        reasons=decision.reasons,
        revocation_details=result.revocation_details,
        chain_der=result.chain,
        subjects=result.subjects,
        anchor=result.anchor,
    )


__all__ = [
    "ENV_CRL_DIR",
    "REVOCATION_BUDGET_S",
    "CertificateReport",
    "certificate_report",
    "crl_directory",
    "load_trust_files",
    "login_verifier",
    "read_input",
]
