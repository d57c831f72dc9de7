"""Fuzz target of the service's request bodies (mie.service.bodies): the media type check, the
strict JSON parse with its size and depth bounds, then the evidence document.

Oracle: only mie errors; a body taken is within the limits and nests no deeper than
:data:`~mie.service.bodies.MAX_DEPTH`; evidence taken round-trips (``to_json`` read back
gives the same evidence).
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mie.core.errors import MieError
from mie.emulation.testpki import CardIdentity, default_rpps
from mie.evidence import Evidence, X509SignatureEvidence
from mie.request import bound_challenge
from mie.result import AuthenticatorInfo, AuthResult
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target

_LIMIT = 65536
_ORIGIN = "https://iam.example"
_NONCE = bytes(range(32))
_MEDIA = (
    "application/json",
    "application/json; charset=utf-8",
    'Application/JSON;charset="utf-8"',
    "text/plain",
    "",
)


def _evidence(context: Context) -> X509SignatureEvidence:
    card = context.pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000001")
    signed = bound_challenge(_ORIGIN, _NONCE)
    signature = card.authentication.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    der = card.authentication.certificate.public_bytes(serialization.Encoding.DER)
    return X509SignatureEvidence(_NONCE, _ORIGIN, signed, signature, (der,))


def _seeds(context: Context) -> list[bytes]:
    evidence = _evidence(context)
    info = AuthenticatorInfo("cps3", "2800000001", None)
    bodies = [
        evidence.to_json(),
        {"evidence": evidence.to_json()},
        AuthResult(True, authenticator=info, evidence=evidence, reasons=("r",)).to_json(),
        {"type": "x-future"},
        {"type": "webauthn-assertion", "nonce": _NONCE.hex()},
        [[[[]]]],
        {},
    ]
    out = []
    for i, body in enumerate(bodies):
        media = _MEDIA[i % len(_MEDIA)].encode()
        out.append(media + b"\n" + json.dumps(body).encode())
    out.append(b"application/json\n" + b"[" * 40 + b"]" * 40)
    out.append(b'application/json\n{"type": NaN}')
    return out


def _prepare(context: Context) -> Run:
    from mie.service.bodies import (
        MAX_DEPTH,
        check_depth,
        check_media_type,
        parse_evidence_body,
        parse_json,
    )

    def run(data: bytes) -> None:
        head, _, body = data.partition(b"\n")
        try:
            check_media_type(head.decode("latin-1"))
        except MieError:
            pass
        try:
            obj = parse_json(body, limit=_LIMIT)
        except MieError:
            return
        if len(body) > _LIMIT:
            raise OracleViolation("service body: a body over the limit was parsed")
        check_depth(obj, "parsed body", MAX_DEPTH)
        try:
            evidence, authenticator = parse_evidence_body(obj)
        except MieError:
            return
        again = Evidence.from_json(json.loads(json.dumps(evidence.to_json())))
        if again != evidence:
            raise OracleViolation("service body: evidence does not round-trip through to_json")
        if authenticator is not None and not isinstance(authenticator, AuthenticatorInfo):
            raise OracleViolation("service body: the authenticator is not an AuthenticatorInfo")

    return run


SERVICE_BODY_TARGETS = [
    Target(
        "service-body",
        "mie serve request bodies: media type, strict JSON with size and depth bounds, then "
        "the evidence document (bare, {evidence}, or a whole result)",
        _seeds,
        _prepare,
        max_len=_LIMIT + 64,
    ),
]
