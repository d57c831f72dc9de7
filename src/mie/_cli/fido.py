"""``mie fido``: FIDO2 security keys (issue 10): list, register, authenticate, verify, and the
FIDO metadata (MDS3) blob.

A key is named by ``--key``: ``hid:PATH`` (a USB key), ``socket:PATH`` (``mie emulate fido2
--hid-socket PATH``), ``pcsc:READER`` (the FIDO applet of a contactless card) or
``emulator[:STATE]`` (an emulated key in this process); without ``--key``, the only key
:func:`mie.transport.ctap.list_ctap_devices` finds (several: exit 2 naming them; none: exit 1
``no_card``).

``mie fido register`` is an enrolment desk: both sides in one process. The key creates a
credential for the ``--nonce`` and ``--origin`` (direct attestation), the registration is checked
with the FIDO policy (``--policy``: attestation, AAGUID allowlist or metadata, user verification,
algorithms) and stored in the credential store (``--store URL``) bound to the professional's
national identifier (``--identity``); ``--store none`` is a dry run (checked, not stored).
``mie fido auth`` has the key sign an assertion and verifies it at once as an IAM would
(:class:`mie.fido.assertion.FidoVerifier`: binding, signature, counter, level); ``mie fido
verify`` verifies a saved one (``mie fido auth --json`` output, bare evidence, or with
``--webauthn`` a browser's W3C JSON).

Exit codes (DESIGN.md): 0 valid; 1 a check failed or the key failed (the contract code in the
error, e.g. ``attestation_refused``, ``aaguid_unknown``, ``suspected_clone``, ``invalid_pin``,
``card_removed``); 2 bad usage or a file that cannot be read (a policy, allowlist or metadata
blob that is not of its format, a saved result that is not JSON).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mie._cli.auth import (
    AuthFailedError,
    CliPin,
    failure_result,
    parse_nonce,
    parse_origin,
    print_result,
)
from mie._cli.lifecycle import REVOCATION_REASONS, temporary_options
from mie._cli.options import STORE_NONE, Seconds, open_store, with_evidence_arguments
from mie._cli.output import emit_json, json_option, warn
from mie._cli.state import CliState, UsageError
from mie.core.errors import (
    EvidenceFormatError,
    JsonFormatError,
    MieError,
    PinFormatError,
)
from mie.fido.errors import CredentialUnknownError, FidoPolicyError, MetadataFormatError
from mie.request import DEFAULT_NONCE_BYTES, MAX_NONCE_BYTES, MIN_NONCE_BYTES, AuthRequest
from mie.result import AuthenticatorInfo, AuthResult, ErrorInfo

if TYPE_CHECKING:
    from mie.fido.assertion import FidoVerifier
    from mie.fido.mds import MetadataIndex
    from mie.fido.policy import FidoPolicy
    from mie.fido.registration import RegisteredCredential, RegistrationData
    from mie.store.base import Store
    from mie.trust.identity import Identity

DEFAULT_TOUCH_TIMEOUT = 30.0
MAX_TOUCH_TIMEOUT = 600.0
MAX_CREDENTIALS = 64
MAX_USER_NAME = 64
MAX_SAVED_BYTES = 64 * 1024
"""The largest saved result or W3C JSON file ``mie fido verify`` reads."""
MAX_MDS_BYTES = 64 * 1024 * 1024
"""The largest FIDO metadata blob downloaded or read."""
MDS_URL = "https://mds3.fidoalliance.org/"
MDS_TIMEOUT = 60.0

FIDO_NOT_A_RESULT = (FidoPolicyError, MetadataFormatError)
"""A FIDO policy, allowlist or metadata file that cannot be read: exit 2, not an AuthResult."""
# Bad usage or an unreadable file, found before the key is touched or after: the CLI's usage
# exit (2), not an AuthResult.
_NOT_A_RESULT = (UsageError, PinFormatError, JsonFormatError, *FIDO_NOT_A_RESULT)


key_option = click.option(
    "--key",
    "key_spec",
    help="The key: hid:PATH, socket:PATH, pcsc:READER or emulator[:STATE] "
    "(default: the only key found).",
)
policy_option = click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The FIDO policy file (mie-fido-policy/1).",
)
store_option = click.option(
    "--store",
    "store_url",
    required=True,
    help="The credential store: sqlite:PATH, sqlite:///PATH or postgresql://...",
)
origin_option = click.option(
    "--origin",
    help="The relying party's origin, https://host[:port] (default: https:// + the rp id).",
)
rp_id_option = click.option("--rp-id", help="The relying party id (default: the policy's rp_id).")
nonce_option = click.option(
    "--nonce",
    "nonce_hex",
    help=f"The relying party's nonce, hex, {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes "
    f"(default: {DEFAULT_NONCE_BYTES} random bytes).",
)
pin_options = (
    click.option(
        "--pin-stdin", is_flag=True, help="Read the key's PIN from the first line of stdin."
    ),
    click.option("--allow-last-try", is_flag=True, help="Present the PIN even with one try left."),
)
root_option = click.option(
    "--root",
    type=click.Path(dir_okay=False),
    help="The MDS root certificate, PEM or DER (default: the bundled FIDO Alliance root).",
)
timeout_option = click.option(
    "--timeout",
    type=Seconds(maximum=MAX_TOUCH_TIMEOUT),
    default=DEFAULT_TOUCH_TIMEOUT,
    show_default=True,
    help="Seconds the key may take, the touch included.",
)


def _with(*options: Any) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.group("fido")
def fido_group() -> None:
    """FIDO2 security keys: list, register, authenticate, verify; FIDO metadata."""


# Shared steps


def load_policy(path: str) -> FidoPolicy:
    """:return: the FIDO policy in ``path``.

    :raises FidoPolicyError: missing, unreadable or not of the format (exit 2).
    """
    from mie.fido.policy import FidoPolicy

    return FidoPolicy.load(path)


def load_metadata(policy: FidoPolicy | None) -> MetadataIndex | None:
    """:return: the FIDO metadata index the policy names (its blob verified against its root,
    or the bundled MDS root), or ``None`` when the policy uses none.

    :raises MetadataFormatError: the blob cannot be read or parsed (exit 2).
    :raises FidoPolicyError: the root file holds no single certificate (exit 2).
    :raises MetadataUntrustedError: its signature or chain does not verify (exit 1).
    :raises MetadataStaleError: it is past its next update under ``stale: "refuse"`` (exit 1).
    """
    if policy is None or policy.metadata is None:
        return None
    from mie.fido.mds import MetadataIndex

    for path, what in ((policy.metadata.blob, "MDS blob"), (policy.metadata.root, "MDS root")):
        _regular_file(path, what)
    return MetadataIndex.from_policy(policy.metadata, at=dt.datetime.now(dt.UTC))


def _regular_file(path: Path | None, what: str) -> None:
    """Refuse a file the policy names that is there and is not a regular file, before it is
    opened: a FIFO would block the open with no deadline, ``/dev/zero`` be read to the size
    bound. A missing file is left to the reader (its own message).

    :raises MetadataFormatError: not a regular file (exit 2).
    """
    import os
    import stat

    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise MetadataFormatError(f"Cannot read the {what} {path}: not a regular file")


@contextlib.contextmanager
def opened_store(url: str, *, allow_none: bool = False) -> Iterator[Store | None]:
    """The credential store ``--store`` names, closed at the end of the block.

    :param allow_none: ``none`` is accepted (a dry run).
    :raises UsageError: a malformed URL, or ``none`` where a store is needed.
    :raises StoreError: the store cannot be opened (exit 1).
    """
    if url == STORE_NONE and not allow_none:
        raise UsageError("--store none: this command needs a credential store")
    store = open_store(url)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def _origin(origin: str | None, rp_id: str) -> str:
    return parse_origin(origin if origin is not None else f"https://{rp_id}")


def _request(
    state: CliState, nonce_hex: str | None, origin: str, *, uv: bool, allow_last_try: bool
) -> AuthRequest:
    if nonce_hex is None:
        return AuthRequest.new(
            origin, rng=state.rng, user_verification=uv, allow_last_try=allow_last_try
        )
    return AuthRequest(
        parse_nonce(nonce_hex), origin, user_verification=uv, allow_last_try=allow_last_try
    )


def parse_credential(value: str) -> bytes:
    """:return: a ``--credential`` id, given as unpadded base64url.

    :raises UsageError: not base64url, or not 1 to 1023 bytes.
    """
    if not value or "=" in value or not value.isascii():
        raise UsageError(f"--credential {value[:40]!r}: unpadded base64url expected")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as e:
        raise UsageError(f"--credential {value[:40]!r}: not base64url") from e
    if _b64url(raw) != value or not 1 <= len(raw) <= 1023:
        raise UsageError(f"--credential {value[:40]!r}: not a credential id (1 to 1023 bytes)")
    return raw


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def fido_authenticator(evidence: Any, presented: AuthenticatorInfo | None) -> AuthenticatorInfo:
    """:return: what a failed result says of the key behind FIDO2 ``evidence``: kind ``fido2``
    and the ``credential_ref`` of the credential that signed, as a valid result says (the
    :class:`~mie.fido.assertion.FidoVerifier` rule), never the kind or serial a saved file
    claims; only the presented transport is kept, as the verifier keeps it."""
    import hashlib

    from mie.fido.assertion import AUTHENTICATOR_KIND

    return AuthenticatorInfo(
        AUTHENTICATOR_KIND,
        hashlib.sha256(evidence.credential_id).digest()[:16].hex(),
        None,
        presented.transport if presented is not None else None,
    )


def _failed(error: MieError, info: AuthenticatorInfo | None, as_json: bool) -> AuthFailedError:
    """Print the failed ``AuthResult`` (under ``--json``); :return: the exit-1 error."""
    failure = failure_result(error, info)
    if as_json:
        emit_json(failure.to_json())
    assert failure.error is not None  # noqa: S101 - a failure result has its error
    return AuthFailedError(failure.error.to_json())


# mie fido list


@fido_group.command("list")
@json_option("Print the keys as JSON.")
@click.pass_obj
def list_command(state: CliState, as_json: bool) -> int:
    """List the FIDO2 keys attached (USB keys, cards with a FIDO applet in PC/SC readers): what
    each says of itself (getInfo) and its PIN tries left. No PIN is asked, no try spent."""
    from mie.transport.ctap import list_ctap_devices

    keys = [_describe(state, k.spec, k.transport, k.name) for k in list_ctap_devices()]
    if as_json:
        emit_json({"keys": keys})
        return 0
    if not keys:
        click.echo("No FIDO2 key found.")
    for key in keys:
        click.echo(f"{key['key']}  ({key['transport']}: {key['product']})")
        if key["error"] is not None:
            click.echo(f"  not readable: {key['error']}")
            continue
        retries = key["pin_retries"]
        pin = "no PIN set" if retries is None else f"PIN set, {retries} tries left"
        click.echo(f"  model {key['aaguid']}, {', '.join(key['versions'])}; {pin}")
    return 0


_TRANSPORTS = {"hid": "usb", "pcsc": "contactless"}


def _describe(state: CliState, spec: str, transport: str, product: str) -> dict[str, Any]:
    """:return: one ``mie fido list --json`` entry: ``{"key", "transport", "product",
    "aaguid", "versions", "options", "pin_retries", "error"}`` (``error`` the one line a key
    that cannot be read gives, the other fields then ``null``)."""
    entry: dict[str, Any] = {
        "key": spec,
        "transport": _TRANSPORTS.get(transport, transport),
        "product": product,
        "aaguid": None,
        "versions": None,
        "options": None,
        "pin_retries": None,
        "error": None,
    }
    from fido2.ctap2.base import Ctap2

    from mie.fido.authenticator import Fido2Authenticator

    try:
        device = state.open_key(spec)
        authenticator = Fido2Authenticator(device)
        with authenticator.connection:
            authenticator.identify()
            info = Ctap2(device).info
            entry.update(
                aaguid=str(uuid.UUID(bytes=bytes(info.aaguid))),
                versions=list(info.versions),
                options={str(k): bool(v) for k, v in info.options.items()},
                pin_retries=authenticator.pin_retries(),
            )
    except MieError as e:
        entry["error"] = " ".join(str(e).split())
    return entry


# mie fido register


@fido_group.command("register")
@click.option("--identity", required=True, help="The professional: rpps=11 DIGITS or psi=UUID.")
@policy_option
@click.option(
    "--store",
    "store_url",
    required=True,
    help="The credential store: sqlite:PATH, sqlite:///PATH, postgresql://... or none "
    "(a dry run: checked, not stored).",
)
@key_option
@origin_option
@rp_id_option
@nonce_option
@click.option("--resident-key", is_flag=True, help="Make a discoverable credential.")
@click.option(
    "--user-name", help="The account name the key may show (default: the identity's number)."
)
@_with(*pin_options)
@timeout_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Also write the registration (webauthn-registration JSON) to this file.",
)
@temporary_options
@json_option("Print the registration outcome as JSON.")
@click.pass_obj
def register_command(
    state: CliState,
    identity: str,
    policy_path: str,
    store_url: str,
    key_spec: str | None,
    origin: str | None,
    rp_id: str | None,
    nonce_hex: str | None,
    resident_key: bool,
    user_name: str | None,
    pin_stdin: bool,
    allow_last_try: bool,
    timeout: float,
    out: str | None,
    temporary: str | None,
    expires: str | None,
    max_level: str | None,
    replaces: str | None,
    replaces_reason: str | None,
    as_json: bool,
) -> int:
    """Register a FIDO2 key for a professional: the key makes a credential (attested), checked
    with the policy (attestation, AAGUID, user verification) and stored with the identity.
    With --temporary, a spare key until --expires, its level capped, stored with its grant in
    one transaction and audited (--replaces ... --replaces-reason revokes the MIE replaced)."""
    from mie._cli.desfire import parse_identity_option
    from mie._cli.lifecycle import parse_temporary

    id_nat = parse_identity_option(identity)
    policy = load_policy(policy_path)
    rp = rp_id if rp_id is not None else policy.rp_id
    spare = parse_temporary(temporary, expires, max_level, replaces, replaces_reason, rp_id=rp)
    if spare is not None and store_url == STORE_NONE:
        raise UsageError("--temporary: the grant is stored with the credential (not --store none)")
    grant = None
    if spare is not None:
        from mie.store.base import MieRef

        # The template's ref is replaced by the verified credential's.
        grant = spare.grant(MieRef.fido2(rp, b"\0"), id_nat)
    request = _request(
        state, nonce_hex, _origin(origin, rp), uv=True, allow_last_try=allow_last_try
    )
    name = user_name if user_name is not None else identity.partition("=")[2]
    if not 0 < len(name) <= MAX_USER_NAME:
        raise UsageError(f"--user-name must have 1 to {MAX_USER_NAME} characters")
    if out is not None:
        check_out(out)
    info: AuthenticatorInfo | None = None
    data = None
    try:
        metadata = load_metadata(policy)
        with opened_store(store_url, allow_none=True) as store:
            from mie.fido.authenticator import Fido2Authenticator
            from mie.fido.registration import verify_registration

            device = state.open_key(key_spec)
            authenticator = Fido2Authenticator(device, rp_id=rp, timeout=timeout)
            info = authenticator.info
            with authenticator.connection:
                data = authenticator.register(
                    request,
                    user=CliPin(pin_stdin),
                    user_name=name,
                    display_name=name,
                    resident_key=resident_key,
                )
            if out is not None:
                _write(out, data.to_json())
            registered = verify_registration(
                data,
                _expected(request),
                identity=_identity(id_nat),
                policy=policy,
                store=store,
                metadata=metadata,
                temporary=grant,
            )
            lifecycle = None
            if spare is not None and store is not None and registered.record.temporary:
                from mie._cli.lifecycle import granted

                lifecycle = granted(
                    store, registered.record.temporary, spare, test=registered.record.test
                )
    except _NOT_A_RESULT:
        raise
    except MieError as e:
        failure = failure_result(e, info)
        assert failure.error is not None  # noqa: S101 - a failure result has its error
        if as_json:
            emit_json(
                {
                    "valid": False,
                    "error": failure.error.to_json(),
                    "credential": None,
                    "registration": data.to_json() if data is not None else None,
                }
            )
        raise AuthFailedError(failure.error.to_json()) from e
    _print_registration(registered, data, resident_key, as_json, lifecycle)
    return 0


def _expected(request: AuthRequest) -> Any:
    from mie.verification import Expected

    return Expected(request.nonce, request.origin)


def _identity(id_nat: str, *, test: bool = False) -> Identity:
    from mie.trust.identity import Identity, parse_id_nat

    id_type, number = parse_id_nat(id_nat)
    return Identity(id_nat, id_type, number, None, None, None, None, test)


def check_out(path: str, option: str = "--out") -> None:
    """Refuse an output path that is there and is not a regular file, before anything is done:
    the file is written atomically (a new file renamed over the path), so ``/dev/null``, a FIFO
    or a symbolic link would be replaced, not written to.

    :raises UsageError: the path is a device, FIFO, socket or symbolic link, or cannot be
        examined.
    """
    import os
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"{option} {path!r}: {e.strerror or e}") from e
    if not stat.S_ISREG(mode):
        raise UsageError(
            f"{option} {path!r}: not a regular file (the file is replaced, not written to)"
        )


def _write(path: str, obj: Any) -> None:
    import json

    from mie.trust.cache import atomic_write

    try:
        atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode("utf-8"))
    except OSError as e:
        raise UsageError(f"--out {path!r}: cannot write ({e.strerror or e})") from e


def _print_registration(
    registered: RegisteredCredential,
    data: RegistrationData,
    discoverable: bool,
    as_json: bool,
    temporary: dict[str, Any] | None = None,
) -> None:
    credential = credential_json(registered, discoverable=discoverable)
    if as_json:
        emit_json(
            {
                "valid": True,
                "error": None,
                "credential": credential,
                "registration": data.to_json(),
                **({"temporary": temporary} if temporary is not None else {}),
            }
        )
        return
    verb = "Registered" if registered.stored else "Checked (dry run, not stored)"
    click.echo(f"{verb}: credential {credential['credential_ref']} for {credential['rp_id']}")
    identity = credential["identity"]
    click.echo(f"  professional: {identity['id_type']} {identity['id']}")
    attestation = credential["attestation"]
    anchor = attestation["trust_anchor"] or "no trust anchor"
    kind = (
        attestation["format"]
        if attestation["format"] == "none"
        else (f"{attestation['format']}/{attestation['type']}")
    )
    click.echo(f"  attestation: {kind} ({anchor})")
    click.echo(f"  model: {credential['aaguid']}, {credential['alg']}")
    click.echo(f"  level cap: {credential['level_cap'] or 'none'}")
    for reason in credential["reasons"]:
        click.echo(f"    - {reason}")
    if temporary is not None:
        click.echo(
            f"  temporary: {temporary['reason']} until {temporary['expires_at']}, level at most "
            f"{temporary['max_level']}"
        )
        if temporary["replaced"] is not None:
            replaced = temporary["replaced"]
            click.echo(f"  revoked: {replaced['mie']} ({replaced['reason']})")


def credential_json(registered: RegisteredCredential, *, discoverable: bool) -> dict[str, Any]:
    """:return: the ``credential`` object of ``mie fido register --json`` (issue 10 plan §6.1;
    the service's registration answers it too): :func:`mie.fido.registration.credential_summary`."""
    from mie.fido.registration import credential_summary

    return credential_summary(registered, discoverable=discoverable)


# mie fido revoke


@fido_group.command("revoke")
@click.option(
    "--credential",
    "credential_id",
    required=True,
    help="The credential id, base64url (as mie fido register prints it).",
)
@click.option("--rp-id", help="The relying party id (or --policy: the policy's).")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False),
    help="The FIDO policy file whose rp_id names the relying party.",
)
@click.option(
    "--reason", required=True, type=click.Choice(REVOCATION_REASONS), help="Why it is revoked."
)
@click.option("--note", help="A short note (at most 200 printable characters).")
@store_option
@json_option(
    'Print {"mie", "reason", "note", "revoked_at", "by", "node", "already_revoked", "audit"}.'
)
def revoke_command(
    credential_id: str,
    rp_id: str | None,
    policy_path: str | None,
    reason: str,
    note: str | None,
    store_url: str,
    as_json: bool,
) -> int:
    """Revoke a FIDO2 key's credential (lost, stolen, its holder left...): every node refuses
    it from its next assertion. Revoking it again changes nothing (the first revocation is
    shown). Audited in the store's chain of node cli:HOSTNAME."""
    from mie._cli.lifecycle import print_revoked
    from mie._cli.lifecycle import revoke as revoke_mie
    from mie.store.base import MieRef

    if (rp_id is None) == (policy_path is None):
        raise UsageError("Give --rp-id RP or --policy FILE (one of them)")
    rp = rp_id if rp_id is not None else load_policy(str(policy_path)).rp_id
    raw = parse_credential(credential_id)
    with opened_store(store_url) as store:
        assert store is not None  # noqa: S101 - opened_store refuses none here
        done = revoke_mie(store, MieRef.fido2(rp, raw), reason, note)
    print_revoked(done, as_json)
    return 0


# mie fido auth


@fido_group.command("auth")
@policy_option
@store_option
@key_option
@origin_option
@rp_id_option
@nonce_option
@click.option(
    "--credential",
    "credentials",
    multiple=True,
    help="A credential id the key may use, base64url (repeat; default: the key's "
    "discoverable credentials).",
)
@click.option(
    "--identity",
    help="The professional, rpps=11 DIGITS or psi=UUID: the key may use the credentials the "
    "store holds for them (added to --credential).",
)
@click.option("--no-uv", is_flag=True, help="Do not ask the key to verify the user (no PIN).")
@_with(*pin_options)
@timeout_option
@json_option("Print the AuthResult as JSON.")
@click.pass_obj
def auth_command(
    state: CliState,
    policy_path: str,
    store_url: str,
    key_spec: str | None,
    origin: str | None,
    rp_id: str | None,
    nonce_hex: str | None,
    credentials: tuple[str, ...],
    identity: str | None,
    no_uv: bool,
    pin_stdin: bool,
    allow_last_try: bool,
    timeout: float,
    as_json: bool,
) -> int:
    """Authenticate with a FIDO2 key: the key signs the nonce bound to the origin, and the
    assertion is verified at once (policy, stored credential, signature, counter, level)."""
    if len(credentials) > MAX_CREDENTIALS:
        raise UsageError(f"--credential: at most {MAX_CREDENTIALS}")
    ids = [parse_credential(c) for c in credentials]
    id_nat = None
    if identity is not None:
        from mie._cli.desfire import parse_identity_option

        id_nat = parse_identity_option(identity)
    policy = load_policy(policy_path)
    rp = rp_id if rp_id is not None else policy.rp_id
    request = _request(
        state, nonce_hex, _origin(origin, rp), uv=not no_uv, allow_last_try=allow_last_try
    )
    info: AuthenticatorInfo | None = None
    try:
        metadata = load_metadata(policy)
        with _opened_verifier(policy, store_url, metadata) as (store, verifier):
            from mie.fido.authenticator import Fido2Authenticator

            if id_nat is not None:
                stored = store.credentials_of(id_nat, policy.rp_id)
                if not stored:
                    raise CredentialUnknownError(
                        f"No credential registered for {identity} on {policy.rp_id}"
                    )
                ids += [r.credential_id for r in stored if r.credential_id not in ids]
            device = state.open_key(key_spec)
            authenticator = Fido2Authenticator(device, rp_id=rp, credentials=ids, timeout=timeout)
            info = authenticator.info
            with authenticator.connection:
                evidence = authenticator.authenticate(
                    request, user=CliPin(pin_stdin) if not no_uv else None
                )
            info = authenticator.info
            state.kind = "fido2"
            result = verifier.verify(evidence, _expected(request), authenticator=info)
    except _NOT_A_RESULT:
        raise
    except MieError as e:
        raise _failed(e, info, as_json) from e
    _print(result, as_json, "Authenticated")
    return 0


def _fido_verifier(
    policy: FidoPolicy, store: Store, metadata: MetadataIndex | None
) -> FidoVerifier:
    from mie.fido.assertion import FidoVerifier

    return FidoVerifier(policy, store, metadata=metadata)


@contextlib.contextmanager
def fido_verifier_for(
    policy: FidoPolicy | None, store_url: str | None, metadata: MetadataIndex | None
) -> Iterator[FidoVerifier | None]:
    """The FIDO2 verifier of ``--fido-policy`` and ``--store`` (``mie verify-evidence``,
    ``mie auth``), its store closed at the end of the block.

    :return: the verifier, or ``None`` when neither was given.
    :raises UsageError: a malformed store URL, or ``none``.
    :raises StoreError: the store cannot be opened (exit 1).
    """
    if policy is None or store_url is None:
        yield None
        return
    with _opened_verifier(policy, store_url, metadata) as (_, verifier):
        yield verifier


@contextlib.contextmanager
def _opened_verifier(
    policy: FidoPolicy, store_url: str, metadata: MetadataIndex | None
) -> Iterator[tuple[Store, FidoVerifier]]:
    """:return: the store ``store_url`` names (closed at the end of the block) and the
    verifier of ``policy`` on it.

    :raises UsageError: a malformed store URL, or ``none``.
    :raises StoreError: the store cannot be opened.
    """
    with opened_store(store_url) as store:
        assert store is not None  # noqa: S101 - opened_store refuses none here
        yield store, _fido_verifier(policy, store, metadata)


def _print(result: AuthResult, as_json: bool, verb: str) -> None:
    if not result.valid:
        # FidoVerifier raises on a failed check; a result not valid is refused the same way.
        error = result.error or ErrorInfo.from_exception(EvidenceFormatError("not valid"))
        raise AuthFailedError(error.to_json())
    print_result(result, as_json, verb=verb)


# mie fido verify


@fido_group.command("verify")
@with_evidence_arguments
@policy_option
@store_option
@click.option(
    "--webauthn",
    is_flag=True,
    help="FILE is a browser's W3C JSON (AuthenticationResponseJSON), not mie's evidence.",
)
@rp_id_option
@json_option("Print the AuthResult as JSON.")
def verify_command(
    file: str,
    nonce_hex: str,
    origin: str,
    policy_path: str,
    store_url: str,
    webauthn: bool,
    rp_id: str | None,
    as_json: bool,
) -> int:
    """Verify a saved FIDO2 assertion (mie fido auth --json output, an evidence object, or with
    --webauthn a browser's W3C JSON) for the nonce and origin given, as an IAM would."""
    from mie.verification import Expected

    expected = Expected(parse_nonce(nonce_hex), parse_origin(origin))
    policy = load_policy(policy_path)
    if rp_id is not None and not webauthn:
        raise UsageError("--rp-id goes with --webauthn (mie's evidence names its rp id)")
    info: AuthenticatorInfo | None = None
    try:
        metadata = load_metadata(policy)
        with _opened_verifier(policy, store_url, metadata) as (_, verifier):
            if webauthn:
                evidence = _webauthn_file(file, expected, rp_id or policy.rp_id)
            else:
                evidence, info = _evidence_file(file)
                if evidence.type != "webauthn-assertion":
                    raise EvidenceFormatError(
                        f"{file}: {evidence.type} evidence, not a FIDO2 assertion "
                        "(webauthn-assertion): use mie verify-evidence"
                    )
            info = fido_authenticator(evidence, info)
            result = verifier.verify(evidence, expected)
    except _NOT_A_RESULT:
        raise
    except MieError as e:
        raise _failed(e, info, as_json) from e
    _print(result, as_json, "Verified")
    return 0


def _evidence_file(file: str) -> tuple[Any, AuthenticatorInfo | None]:
    """:return: :func:`~mie.evidence.load_evidence_file`'s evidence and authenticator; a
    browser's W3C JSON (``"type": "public-key"``) is refused with the option it needs."""
    from mie.evidence import load_evidence_file

    try:
        return load_evidence_file(file)
    except EvidenceFormatError as e:
        from mie.core import strictjson

        try:
            data = _read(file, MAX_SAVED_BYTES, "evidence")
            obj = strictjson.loads(data, file, max_bytes=MAX_SAVED_BYTES)
        except MieError:
            raise e from None
        if isinstance(obj, dict) and obj.get("type") == "public-key":
            raise EvidenceFormatError(
                f"{file}: a W3C WebAuthn JSON (type public-key), not mie's evidence: add"
                " --webauthn --rp-id RP_ID (default: the policy's)"
            ) from e
        raise


def _webauthn_file(file: str, expected: Any, rp_id: str) -> Any:
    """:return: the evidence of a W3C ``AuthenticationResponseJSON`` file.

    :raises JsonFormatError: not strict JSON, or too large (exit 2).
    :raises EvidenceFormatError: JSON of another shape (exit 1).
    """
    from mie.core import strictjson
    from mie.fido.evidence import WebAuthnAssertionEvidence

    obj = strictjson.loads(
        _read(file, MAX_SAVED_BYTES, "WebAuthn response"),
        f"WebAuthn response {file!r}",
        max_bytes=MAX_SAVED_BYTES,
    )
    return WebAuthnAssertionEvidence.from_webauthn(
        obj, nonce=expected.nonce, origin=expected.origin, rp_id=rp_id
    )


def _read(file: str, limit: int, what: str) -> bytes:
    """:return: the bytes of a regular file of at most ``limit`` bytes (``what`` it is, for the
    messages).

    :raises JsonFormatError: missing, unreadable, not a regular file or too large (exit 2).
    """
    import os
    import stat

    try:
        with open(file, "rb", opener=lambda p, f: os.open(p, f | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise JsonFormatError(f"Cannot read {what} {file!r}: not a regular file")
            data = f.read(limit + 1)
    except OSError as e:
        raise JsonFormatError(f"Cannot read {what} {file!r}: {e.strerror or e}") from e
    if len(data) > limit:
        raise JsonFormatError(f"{what} {file!r} is larger than {limit} bytes")
    return data


# mie fido mds


@fido_group.group("mds")
def mds_group() -> None:
    """The FIDO metadata (MDS3) blob: fetch it, show what it says."""


@mds_group.command("fetch")
@click.option("--url", default=MDS_URL, show_default=True, help="Where the blob is published.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The blob file to write."
)
@root_option
@click.option(
    "--revocation",
    type=click.Choice(["hard", "soft"]),
    default="hard",
    show_default=True,
    help="The signer chain's revocation: hard (its CRLs downloaded through the CRL cache and "
    "checked) or soft (an unknown status accepted, reported).",
)
@json_option("Print the fetched blob's summary as JSON.")
@click.pass_obj
def mds_fetch_command(
    state: CliState, url: str, out: str, root: str | None, revocation: str, as_json: bool
) -> int:
    """Download the FIDO metadata blob (HTTPS, at most 64 MiB, 60 s), verify it (signature,
    chain to the MDS root with revocation, next update), and write it to --out only if its
    number is above the one of the blob already there."""
    from mie.fido.mds import MetadataIndex, fetch_blob
    from mie.trust import RevocationMode
    from mie.trust.cache import atomic_write
    from mie.trust.login import crl_directory

    if not url.lower().startswith("https://"):
        raise UsageError(f"--url {url[:60]!r}: the blob is fetched over https only")
    check_out(out)
    anchor = _root(root)
    now = dt.datetime.now(dt.UTC)
    previous = _previous_no(Path(out), anchor, now)
    blob = fetch_blob(url, deadline=MDS_TIMEOUT, max_bytes=MAX_MDS_BYTES)
    index = MetadataIndex.load(
        blob,
        root=anchor,
        at=now,
        min_no=previous,
        revocation=RevocationMode(revocation),
        crl_cache=state.crl_cache(crl_directory()),
    )
    try:
        atomic_write(Path(out), blob)
    except OSError as e:
        raise UsageError(f"--out {out!r}: cannot write ({e.strerror or e})") from e
    _print_mds(index, None, as_json, verb=f"Fetched to {out}:")
    return 0


def _previous_no(path: Path, root: Any, now: dt.datetime) -> int | None:
    """:return: the number of the blob already in ``path`` (verified, stale or not), or
    ``None`` when there is none. One that does not verify is replaced, with a warning."""
    from mie.fido.mds import MetadataIndex

    if not path.exists():
        return None
    try:
        return MetadataIndex.load(_read_blob(str(path)), root=root, at=now, stale="warn").no
    except MieError as e:
        warn(f"mie: warning: replacing {str(path)!r}, which does not verify ({e})")
        return None


@mds_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--aaguid", help="Show the entry of this AAGUID (xxxxxxxx-xxxx-...).")
@root_option
@click.option(
    "--stale",
    type=click.Choice(["refuse", "warn"]),
    default="warn",
    show_default=True,
    help="A blob past its next update: refused (exit 1), or shown with the reason.",
)
@json_option("Print the blob's summary as JSON.")
def mds_show_command(
    file: str, aaguid: str | None, root: str | None, stale: str, as_json: bool
) -> int:
    """Verify a FIDO metadata blob and show its number, next update, signer and number of
    entries, and with --aaguid that model's entry."""
    from mie.fido.mds import MetadataIndex

    wanted = None
    if aaguid is not None:
        try:
            wanted = uuid.UUID(aaguid).bytes
        except ValueError as e:
            raise UsageError(f"--aaguid {aaguid[:40]!r} is not a UUID") from e
    anchor = _root(root)
    blob = _read_blob(file)
    index = MetadataIndex.load(
        blob, root=anchor, at=dt.datetime.now(dt.UTC), stale="warn" if stale == "warn" else "refuse"
    )
    _print_mds(index, wanted, as_json)
    return 0


def _read_blob(file: str) -> bytes:
    from mie.fido.errors import MetadataFormatError

    try:
        return _read(file, MAX_MDS_BYTES, "FIDO metadata blob")
    except JsonFormatError as e:
        raise MetadataFormatError(str(e)) from e


def _root(path: str | None) -> Any:
    """:return: the ``--root`` certificate, or ``None`` for the bundled MDS root."""
    if path is None:
        return None
    from mie.fido.mds import load_root

    _regular_file(Path(path), "MDS root")  # a FIFO would block the open
    return load_root(path)


def mds_summary(index: MetadataIndex, aaguid: bytes | None) -> dict[str, Any]:
    """:return: the JSON of ``mie fido mds show``: ``{"no", "next_update", "signer",
    "entries", "reasons", "entry"}``, ``entry`` the model's view (or ``null``)."""
    entry = None
    if aaguid is not None:
        view = index.entry(aaguid)
        entry = (
            None
            if view is None
            else {
                "aaguid": str(uuid.UUID(bytes=aaguid)),
                "description": view.description,
                "certification": view.certification,
                "statuses": [
                    {
                        "status": r.status,
                        "date": r.date.isoformat() if r.date else None,
                        "certificate": r.certificate is not None,
                    }
                    for r in view.statuses
                ],
                "roots": [r.subject.rfc4514_string() for r in view.roots],
            }
        )
    return {
        "no": index.no,
        "next_update": index.next_update.isoformat(),
        "signer": index.signer.subject.rfc4514_string(),
        "entries": len(index),
        "reasons": list(index.reasons),
        "entry": entry,
    }


def _print_mds(
    index: MetadataIndex, aaguid: bytes | None, as_json: bool, *, verb: str = "FIDO metadata"
) -> None:
    summary = mds_summary(index, aaguid)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"{verb} blob {summary['no']}, next update {summary['next_update']}")
    click.echo(f"  signer: {summary['signer']}")
    click.echo(f"  entries: {summary['entries']}")
    for reason in summary["reasons"]:
        click.echo(f"  - {reason}")
    if aaguid is None:
        return
    entry = summary["entry"]
    if entry is None:
        click.echo(f"  {uuid.UUID(bytes=aaguid)}: not listed")
        return
    click.echo(f"  {entry['aaguid']}: {entry['description'] or '(no description)'}")
    click.echo(f"    certification: {entry['certification'] or 'none'}")
    for status in entry["statuses"]:
        click.echo(f"    {status['status']} since {status['date'] or 'an unknown date'}")
