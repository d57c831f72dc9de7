"""``mie verify-evidence``: check saved ``mie auth --json`` output the way an IAM would.

The file is a saved ``AuthResult`` (its ``evidence`` and ``authenticator``) or a bare evidence
object. The nonce and origin are the verifier's own, given on the command line: evidence made
for another nonce or another relying party is refused (``nonce_mismatch``,
``origin_mismatch``). The certificate chain is checked against the trust store, the
``--trust`` / ``--intermediate`` files and the CRLs (``--crl`` files, then the CRL cache, which
downloads a missing or stale CRL). Badge evidence (``desfire-session``) is checked with the
badge configuration (``--badge-config``, as for ``mie auth``): the session replayed with its
keys, the record's signature and binding, originality; ``--pin-stdin`` gives the second-factor
PIN the verifier checks (without it: the badge alone, level ``low``). A FIDO2 assertion
(``webauthn-assertion``) is checked with the FIDO policy (``--fido-policy``) and the credential
store that holds its registration (``--store``): binding, client and authenticator data, the
stored key's signature, the counter (advanced: the assertion is then spent), the level.

Exit codes (decision D3 of issue 8): 0 verified; 1 a check failed, the file is JSON but not
evidence (``malformed``), or the badge configuration's key provider or store failed
(``reader_error``); 2 bad usage, a file that is not JSON at all, or a badge configuration,
key file or FIDO policy that cannot be read or parsed.
"""

from __future__ import annotations

import click

from mie._cli.auth import (
    NOT_A_RESULT,
    AuthFailedError,
    CliPin,
    failure_result,
    open_badge_verifier,
    parse_nonce,
    parse_origin,
    print_result,
)
from mie._cli.fido import (
    FIDO_NOT_A_RESULT,
    fido_authenticator,
    fido_verifier_for,
    load_metadata,
    load_policy,
)
from mie._cli.options import (
    TrustOptions,
    badge_config_option,
    with_evidence_arguments,
    with_fido_options,
    with_trust_options,
)
from mie._cli.output import emit_json, json_option
from mie._cli.state import UsageError
from mie.core.errors import MieError
from mie.evidence import load_evidence_file
from mie.result import AuthenticatorInfo
from mie.verification import BADGE_EVIDENCE, Expected, verify_evidence

FIDO_EVIDENCE = "webauthn-assertion"


@click.command("verify-evidence")
@with_evidence_arguments
@with_trust_options("Seconds the revocation step may take in all (every CRL/OCSP download).")
@badge_config_option
@click.option(
    "--pin-stdin",
    is_flag=True,
    help="Badge evidence: read the second-factor PIN from the first line of stdin.",
)
@with_fido_options("FIDO2 evidence")
@json_option("Print the AuthResult as JSON.")
def verify_evidence_command(
    file: str,
    nonce_hex: str,
    origin: str,
    trust_options: TrustOptions,
    badge_config: str | None,
    pin_stdin: bool,
    fido_policy: str | None,
    store_url: str | None,
    as_json: bool,
) -> int:
    """Verify FILE, saved `mie auth --json` output or an evidence object, for the nonce and
    origin given: signature, binding to nonce and origin, certificate chain, revocation,
    identity and level. Badge evidence: the session replayed with the keys of the badge
    configuration, the record, originality; --pin-stdin for the second factor. FIDO2
    evidence: --fido-policy and --store (the stored credential, its counter, the level)."""
    expected = Expected(parse_nonce(nonce_hex), parse_origin(origin))
    if (fido_policy is None) != (store_url is None):
        raise UsageError("--fido-policy and --store go together (FIDO2 evidence)")
    policy = load_policy(fido_policy) if fido_policy is not None else None
    verifier = trust_options.verifier()
    authenticator: AuthenticatorInfo | None = None
    try:
        # As in mie auth: a badge configuration, key file or FIDO policy that cannot be read is
        # exit 2; its key provider or store failing (opened here, or used by the check) is 1.
        with (
            open_badge_verifier(badge_config) as badges,
            fido_verifier_for(policy, store_url, load_metadata(policy)) as fido,
        ):
            evidence, authenticator = load_evidence_file(file)
            if evidence.type == BADGE_EVIDENCE and badges is None:
                raise UsageError(
                    "Badge evidence (desfire-session) needs a badge configuration (--badge-config)"
                )
            if evidence.type == FIDO_EVIDENCE and fido is None:
                raise UsageError(
                    "FIDO2 evidence (webauthn-assertion) needs --fido-policy and --store"
                )
            if evidence.type == FIDO_EVIDENCE:
                # A failed result names the credential that signed, not the file's claim.
                authenticator = fido_authenticator(evidence, authenticator)
            result = verify_evidence(
                evidence,
                expected,
                verifier=verifier,
                authenticator=authenticator,
                badges=badges,
                user=CliPin(from_stdin=True) if pin_stdin else None,
                fido=fido,
            )
    except (*NOT_A_RESULT, *FIDO_NOT_A_RESULT):
        raise  # not JSON at all, bad usage, unreadable configuration: exit 2
    except MieError as e:
        failure = failure_result(e, authenticator)
        if as_json:
            emit_json(failure.to_json())
        # Evidence that fails a check, even a malformed chain in it, is exit 1 (as in mie auth).
        assert failure.error is not None  # noqa: S101 - a failure result has its error
        raise AuthFailedError(failure.error.to_json()) from e
    print_result(result, as_json, verb="Verified")
    return 0
