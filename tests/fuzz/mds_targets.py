"""Fuzz target of the FIDO metadata loader (mie.fido.mds), see :mod:`tests.fuzz.targets`.

One target, ``mds-blob``, two modes chosen by the first byte of the input: even, the rest is a
whole blob handed to :meth:`~mie.fido.mds.MetadataIndex.load` (the JWS layer, the header, the
chain); odd, the rest is a payload the TEST signer signs first, so mutations reach the payload
parser, the index and python-fido2's dataclasses behind their guard. Every model of an accepted
blob is then checked against two policies.

Oracles: an accepted blob was signed by a signer the TEST CA issued (the TEST root issued only
that CA, whose pathLen is 0);
a signed payload that loads has the ``no`` its JSON carries; :meth:`~mie.fido.mds.MetadataIndex.
check` of a listed model returns the view :meth:`~mie.fido.mds.MetadataIndex.entry` gives, or
raises a mie error.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from mie.emulation.fido_mds import SignerFault, TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, OTHER_AAGUID, TestAttestationPki
from mie.fido.mds import MetadataIndex
from mie.fido.policy import MetadataPolicy
from mie.trust import RevocationMode
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target, swallow

_BLOB, _PAYLOAD = b"\x00", b"\x01"
_POLICIES = (
    MetadataPolicy(blob=Path("fuzz.jwt")),
    MetadataPolicy(blob=Path("fuzz.jwt"), required=False, min_certification=None),
)
_MAX_CHECKED = 8


@functools.cache
def _mds() -> TestMds:
    """One TEST publisher per process (its RSA signer key is random per instance)."""
    return TestMds.generate()


def _entries() -> list[dict[str, Any]]:
    mds = _mds()
    pki = TestAttestationPki.generate()
    return [
        mds.entry(EMULATOR_AAGUID, [pki.root.certificate], key_identifiers=[b"\x01" * 20]),
        mds.entry(
            OTHER_AAGUID,
            [],
            statuses=[
                ("FIDO_CERTIFIED_L2", "2025-01-01"),
                ("ATTESTATION_KEY_COMPROMISE", "2026-01-01", pki.leaf.der),
                ("SOMETHING_NEW", None),
            ],
        ),
    ]


def _seeds(context: Context) -> list[bytes]:
    mds = _mds()
    entries = _entries()
    payloads = [
        mds.payload(entries, no=5),
        mds.payload([], no=0),
        mds.payload(entries[:1], no=9, next_update="2020-01-01"),
    ]
    blobs = [
        mds.blob(entries, no=5),
        mds.blob(entries, alg="RS256"),
        mds.blob([]),
        mds.blob(entries[1:], signer_fault=SignerFault.X5U_ONLY),
        mds.blob(entries[:1], signer_fault=SignerFault.BAD_SIGNATURE),
        mds.blob([], signer_fault=SignerFault.OTHER_ROOT),
    ]
    return [_BLOB + b for b in blobs] + [_PAYLOAD + p for p in payloads]


def _prepare(context: Context) -> Run:
    mds = _mds()
    at = dt.datetime.now(dt.UTC)
    crls = mds.crls()

    def run(data: bytes) -> None:
        signed = bool(data[:1]) and data[0] & 1 == 1
        rest = data[1:]
        blob = mds.sign(rest) if signed else rest
        index = MetadataIndex.load(
            blob, root=mds.root, at=at, crls=crls, revocation=RevocationMode.HARD, stale="warn"
        )
        try:
            # The TEST root issued only the CA, and the CA (pathLen 0) only signers.
            index.signer.verify_directly_issued_by(mds.ca)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise OracleViolation("mds: a blob not signed by a TEST signer was accepted") from e
        if signed and index.no != json.loads(rest)["no"]:
            raise OracleViolation(f"mds: no {index.no} read, another signed")
        for aaguid in index.aaguids[:_MAX_CHECKED]:
            for policy in _POLICIES:
                swallow(functools.partial(_check, index, aaguid, policy, at))

    return run


def _check(index: MetadataIndex, aaguid: bytes, policy: MetadataPolicy, at: dt.datetime) -> None:
    view = index.check(aaguid, policy=policy, at=at)
    if view is None or view != index.entry(aaguid):
        raise OracleViolation("mds: check of a listed model gave another view than entry")


MDS_TARGETS = [
    Target(
        "mds-blob",
        "FIDO MDS3 blobs: MetadataIndex.load (JWS, header, TEST chain with CRLs, signature, "
        "payload, python-fido2 dataclasses) then check of every model (mie.fido.mds)",
        _seeds,
        _prepare,
        max_len=32768,
        uninstrumented=("mie.emulation",),
    ),
]
