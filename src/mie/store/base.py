"""The interface of the shared state a verifier keeps, and the checks every backend shares.

State that several verifier nodes must agree on lives behind :class:`Store`: the badge second
factor (an opaque hash per badge and its failure counter) and the single-use challenge nonces
of the service (issued with an expiry, consumed exactly once), one table each on every
backend, created by the same idempotent schema step.

The failure counter is two monotonic numbers per badge: ``reserved`` counts every guess ever
reserved, ``cleared`` is the highest reservation a success has forgiven, and the failures are
``reserved - cleared``. A guess is reserved (``reserved + 1``, refused at the lockout) in one
atomic step *before* the PIN is checked, so two nodes checking one badge at once never both get
a guess past the lockout, and a crash between the reservation and the check counts the guess.
A success forgives only the guesses up to its own reservation (``cleared = max(cleared,
ticket)``): wrong guesses reserved meanwhile by other nodes stay counted.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import math
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from mie.core.errors import MieError
from mie.store.errors import (
    AuditConflictError,
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
    MieRevokedError,
    StoreCorruptError,
    StoreError,
    StoreInputError,
)

#: The characters and length of a badge name (the key of its state), e.g. a UID in hex or a
#: record identifier.
BADGE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The longest stored hash a backend accepts.
MAX_HASH_LENGTH = 512
#: The highest lockout a store accepts.
MAX_LIMIT = 1000
#: The shortest and longest challenge nonce a store keeps, in bytes.
MIN_NONCE_LENGTH = 16
MAX_NONCE_LENGTH = 64
#: The longest lifetime of a nonce, in seconds.
MAX_NONCE_LIFETIME = 3600.0
#: The longest session binding kept with a nonce, in bytes (the service's is a 32-byte digest).
MAX_BINDING_LENGTH = 64
#: The longest context kept with a nonce, in characters (opaque text to the store).
MAX_CONTEXT_LENGTH = 2048
#: A relying party id: a lower-case host name of 1 to 253 characters (labels of 1 to 63
#: characters among ``a-z0-9-``, no hyphen at either end).
RP_ID_PATTERN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
#: The longest credential id (WebAuthn: at most 1023 bytes).
MAX_CREDENTIAL_ID_LENGTH = 1023
#: The longest user handle (WebAuthn ``user.id``: at most 64 bytes).
MAX_USER_HANDLE_LENGTH = 64
#: The longest COSE public key a store keeps (an RSA-4096 key is about 540 bytes).
MAX_PUBLIC_KEY_LENGTH = 2048
#: The length of an AAGUID.
AAGUID_LENGTH = 16
#: The highest signature counter (an unsigned 32-bit number in authenticator data).
MAX_SIGN_COUNT = 2**32 - 1
#: An attestation summary or certification level: a short token (``packed/basic``, ``none``,
#: ``FIDO_CERTIFIED_L1``).
SUMMARY_PATTERN = re.compile(r"[A-Za-z0-9._:/+-]{1,64}")
#: The reasons a credential is suspended: a counter went back, or an operator revoked it.
SUSPENSIONS = ("clone-suspected", "revoked")
#: The longest idNat a store keeps.
MAX_ID_NAT_LENGTH = 64


def new_generation() -> int:
    """:return: a random enrolment identifier, positive and below 2**62 (a signed 64-bit
    column holds it on every backend)."""
    return secrets.randbits(62) | 1


@dataclass(frozen=True)
class Reservation:
    """A guess reserved for one badge: what the verifier needs to check it, then to report it.

    :param badge: the badge.
    :param secret_hash: the stored hash to check the guess against.
    :param ticket: the number of this guess among every guess reserved for the badge.
    :param generation: the enrolment the hash belongs to (see :class:`SecretStatus`).
    :param failures: the failures counted with this guess included.
    """

    badge: str
    secret_hash: str
    ticket: int
    generation: int
    failures: int


@dataclass(frozen=True)
class SecretStatus:
    """The state of one badge's second factor (never the hash).

    :param failures: guesses counted and not forgiven by a success.
    :param generation: identifies the enrolment: a random number drawn anew by every
        :meth:`Store.put_secret`, so a reservation made before a re-enrolment (or a removal and a
        new enrolment) never forgives guesses of the new one.
    """

    failures: int
    generation: int


def check_badge(badge: str) -> str:
    """:return: ``badge``, checked.

    :raises StoreInputError: not a string of 1 to 128 characters among ``A-Za-z0-9._:-``.
    """
    if not isinstance(badge, str) or BADGE_PATTERN.fullmatch(badge) is None:
        raise StoreInputError("Badge name must be 1 to 128 characters among A-Z a-z 0-9 . _ : -")
    return badge


def check_hash(secret_hash: str) -> str:
    """:return: ``secret_hash``, checked.

    :raises StoreInputError: not printable ASCII of 1 to 512 characters.
    """
    if (
        not isinstance(secret_hash, str)
        or not 0 < len(secret_hash) <= MAX_HASH_LENGTH
        or not (secret_hash.isascii() and secret_hash.isprintable())
    ):
        raise StoreInputError(f"Stored hash must be 1 to {MAX_HASH_LENGTH} printable ASCII bytes")
    return secret_hash


def check_limit(limit: int) -> int:
    """:return: ``limit``, checked.

    :raises StoreInputError: not an int from 1 to 1000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise StoreInputError(f"Lockout must be a number of guesses from 1 to {MAX_LIMIT}")
    return limit


def check_nonce(nonce: bytes) -> str:
    """:return: ``nonce`` in lower-case hex, the form every backend stores.

    :raises StoreInputError: not 16 to 64 bytes.
    """
    if not isinstance(nonce, bytes) or not MIN_NONCE_LENGTH <= len(nonce) <= MAX_NONCE_LENGTH:
        raise StoreInputError(
            f"Nonce must be {MIN_NONCE_LENGTH} to {MAX_NONCE_LENGTH} bytes of type bytes"
        )
    return nonce.hex()


def check_lifetime(lifetime: float) -> float:
    """:return: ``lifetime``, checked.

    :raises StoreInputError: not a number of seconds above 0 and at most 3600.
    """
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not 0 < lifetime <= MAX_NONCE_LIFETIME
    ):
        raise StoreInputError(f"Nonce lifetime must be above 0 and at most {MAX_NONCE_LIFETIME} s")
    return float(lifetime)


def check_binding(binding: bytes | None) -> bytes | None:
    """:return: ``binding``, checked (``None``: a nonce bound to no session).

    :raises StoreInputError: not 1 to 64 bytes of type bytes.
    """
    if binding is None:
        return None
    if not isinstance(binding, bytes) or not 0 < len(binding) <= MAX_BINDING_LENGTH:
        raise StoreInputError(
            f"Nonce binding must be 1 to {MAX_BINDING_LENGTH} bytes of type bytes"
        )
    return binding


def check_context(context: str | None) -> str | None:
    """:return: ``context``, checked: opaque text the store keeps with a nonce.

    :raises StoreInputError: not a string of 1 to 2048 characters, valid UTF-8 without NUL.
    """
    if context is None:
        return None
    if (
        not isinstance(context, str)
        or not 0 < len(context) <= MAX_CONTEXT_LENGTH
        or "\x00" in context
        or not _encodes(context)
    ):
        raise StoreInputError(
            f"Nonce context must be 1 to {MAX_CONTEXT_LENGTH} characters of UTF-8 text, no NUL"
        )
    return context


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def binding_matches(stored: bytes | None, given: bytes | None) -> bool:
    """:return: whether a consumed nonce's stored binding is the one presented: both absent, or
    equal (compared in constant time, so a caller learns nothing of another session's binding)."""
    if stored is None or given is None:
        return stored is None and given is None
    return hmac.compare_digest(stored, given)


@dataclass(frozen=True)
class CredentialRecord:
    """A registered FIDO2 credential: what a verifier needs to check its assertions, and who it
    belongs to. Every field is public data (no secret); the repr leaves out the key and the user
    handle.

    :param rp_id: the relying party id the credential is scoped to.
    :param credential_id: the credential id (1 to 1023 bytes).
    :param user_handle: the WebAuthn ``user.id`` given at registration (1 to 64 bytes).
    :param public_key: the credential's COSE public key, as registered (1 to 2048 bytes).
    :param alg: its COSE algorithm (``-7`` ES256, ``-8`` EdDSA, ...).
    :param aaguid: the authenticator model (16 bytes).
    :param sign_count: the highest signature counter accepted (0 to 2**32 - 1).
    :param backup_eligible: the BE flag at registration (fixed for the credential's life).
    :param attestation: the attestation summary (``packed/basic``, ``self``, ``none``...).
    :param certification: the model's FIDO certification level, if known.
    :param id_nat: the professional's national identifier, given by the enrolment desk.
    :param test: a test key (its attestation root or allowlist entry is marked TEST).
    :param created_at: registration time, seconds since the epoch (PostgreSQL keeps it to the
        microsecond).
    :param last_used_at: the time of the last accepted assertion, if any.
    :param suspended: ``None``, ``"clone-suspected"`` or ``"revoked"``.
    :param temporary: the grant of a temporary credential (a spare key registered for a
        professional who lost their MIE), read with the credential; ``None``: a permanent one.
    """

    rp_id: str
    credential_id: bytes
    user_handle: bytes = field(repr=False)
    public_key: bytes = field(repr=False)
    alg: int
    aaguid: bytes
    sign_count: int
    backup_eligible: bool
    attestation: str
    certification: str | None
    id_nat: str
    test: bool
    created_at: float
    last_used_at: float | None = None
    suspended: str | None = None
    temporary: TemporaryGrant | None = None


def check_rp_id(rp_id: str) -> str:
    """:return: ``rp_id``, checked.

    :raises StoreInputError: not a lower-case host name of 1 to 253 characters.
    """
    if not isinstance(rp_id, str) or RP_ID_PATTERN.fullmatch(rp_id) is None:
        raise StoreInputError(
            "Relying party id must be a lower-case host name of 1 to 253 characters"
        )
    return rp_id


def check_credential_id(credential_id: bytes) -> str:
    """:return: ``credential_id`` in lower-case hex, the key every backend stores.

    :raises StoreInputError: not 1 to 1023 bytes.
    """
    if (
        not isinstance(credential_id, bytes)
        or not 0 < len(credential_id) <= MAX_CREDENTIAL_ID_LENGTH
    ):
        raise StoreInputError(
            f"Credential id must be 1 to {MAX_CREDENTIAL_ID_LENGTH} bytes of type bytes"
        )
    return credential_id.hex()


def check_sign_count(counter: int) -> int:
    """:return: ``counter``, checked.

    :raises StoreInputError: not an int from 0 to 2**32 - 1.
    """
    if (
        isinstance(counter, bool)
        or not isinstance(counter, int)
        or not 0 <= counter <= MAX_SIGN_COUNT
    ):
        raise StoreInputError(f"Signature counter must be a number from 0 to {MAX_SIGN_COUNT}")
    return counter


def check_id_nat(id_nat: str) -> str:
    """:return: ``id_nat``, checked by :func:`mie.trust.identity.parse_id_nat`.

    :raises StoreInputError: not an idNat.
    """
    if not isinstance(id_nat, str) or not 0 < len(id_nat) <= MAX_ID_NAT_LENGTH:
        raise StoreInputError(f"idNat must be a string of 1 to {MAX_ID_NAT_LENGTH} characters")
    # Imported here: ``import mie.store`` loads no mie.trust.
    from mie.trust.identity import parse_id_nat

    try:
        parse_id_nat(id_nat)
    except MieError as e:
        raise StoreInputError(f"Not an idNat: {e}") from e
    return id_nat


def check_suspension(reason: str) -> str:
    """:return: ``reason``, checked.

    :raises StoreInputError: not ``clone-suspected`` or ``revoked``.
    """
    if reason not in SUSPENSIONS:
        raise StoreInputError("Suspension must be 'clone-suspected' or 'revoked'")
    return reason


def _check_time(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0 <= value < 2**37)
    ):
        raise StoreInputError(f"{name} must be a finite number of seconds since the epoch")
    return float(value)


def _check_bytes(value: bytes, name: str, low: int, high: int) -> bytes:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        size = f"{low} bytes" if low == high else f"{low} to {high} bytes"
        raise StoreInputError(f"{name} must be {size} of type bytes")
    return value


def _check_flag(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise StoreInputError(f"{name} must be a bool")
    return value


def check_credential(record: CredentialRecord) -> CredentialRecord:
    """:return: ``record``, every field checked against its bound.

    :raises StoreInputError: a field of the wrong type or out of its bound.
    """
    if not isinstance(record, CredentialRecord):
        raise StoreInputError("Credential must be a CredentialRecord")
    check_rp_id(record.rp_id)
    check_credential_id(record.credential_id)
    _check_bytes(record.user_handle, "User handle", 1, MAX_USER_HANDLE_LENGTH)
    _check_bytes(record.public_key, "Public key", 1, MAX_PUBLIC_KEY_LENGTH)
    if (
        isinstance(record.alg, bool)
        or not isinstance(record.alg, int)
        or not -(2**31) <= record.alg < 2**31
    ):
        raise StoreInputError("COSE algorithm must be a signed 32-bit number")
    _check_bytes(record.aaguid, "AAGUID", AAGUID_LENGTH, AAGUID_LENGTH)
    check_sign_count(record.sign_count)
    _check_flag(record.backup_eligible, "Backup eligibility")
    _check_flag(record.test, "Test flag")
    for name, value in (
        ("Attestation", record.attestation),
        ("Certification", record.certification),
    ):
        if value is None and name == "Certification":
            continue
        if not isinstance(value, str) or SUMMARY_PATTERN.fullmatch(value) is None:
            raise StoreInputError(
                f"{name} must be 1 to 64 characters among A-Z a-z 0-9 . _ : / + -"
            )
    check_id_nat(record.id_nat)
    _check_time(record.created_at, "Creation time")
    if record.last_used_at is not None:
        _check_time(record.last_used_at, "Last use time")
    if record.suspended is not None:
        check_suspension(record.suspended)
    if record.temporary is not None:
        check_grant(record.temporary)
    return record


# --- MIE lifecycle (issue 11): revocations and temporary grants -------------------------------

#: The kinds of MIE the store keeps a lifecycle for (a CPS card is revoked by the ANS CRL).
MIE_KINDS = ("badge", "fido2")
#: Why a MIE was revoked.
REVOCATION_REASONS = ("lost", "stolen", "damaged", "left", "compromised", "other")
#: Why a temporary MIE was granted: a replacement for a lost one (``pvd``), or an arrival
#: nobody announced (``unannounced``).
TEMPORARY_REASONS = ("pvd", "unannounced")
#: The levels a temporary grant may cap at (never ``high``).
TEMPORARY_LEVELS = ("low", "substantial")
#: The longest a temporary grant lasts, in seconds (7 days).
MAX_TEMPORARY_S = 7 * 86400
#: The length of a badge UID, in bytes.
BADGE_UID_LENGTH = 7
#: The longest revocation note, in characters.
MAX_NOTE_LENGTH = 200
#: Who revoked or granted: an operator's or an API client's name.
ACTOR_PATTERN = re.compile(r"[A-Za-z0-9._:@/+-]{1,128}")
_BADGE_SUBJECT = re.compile(r"[0-9a-f]{14}")
#: A MIE's text form: ``badge:<14 hex>`` or ``fido2:<credential id in base64url>``.
MIE_REF_PATTERN = re.compile(r"badge:[0-9a-f]{14}|fido2:[A-Za-z0-9_-]{2,1364}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(text: str) -> bytes:
    if re.fullmatch(r"[A-Za-z0-9_-]+", text) is None or len(text) % 4 == 1:
        raise ValueError(text)
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(raw) != text:  # one spelling only: no stray bits in the last character
        raise ValueError(text)
    return raw


@dataclass(frozen=True)
class MieRef:
    """A badge or a FIDO2 credential, as the lifecycle table keys it.

    :param kind: ``badge`` or ``fido2``.
    :param subject: a badge's UID in lower-case hex; a credential's ``rp_id:hex id``.
    """

    kind: str
    subject: str

    @classmethod
    def badge(cls, uid: bytes) -> MieRef:
        """:return: the ref of the badge with this 7-byte UID.

        :raises StoreInputError: not 7 bytes.
        """
        _check_bytes(uid, "Badge UID", BADGE_UID_LENGTH, BADGE_UID_LENGTH)
        return cls("badge", uid.hex())

    @classmethod
    def fido2(cls, rp_id: str, credential_id: bytes) -> MieRef:
        """:return: the ref of a FIDO2 credential.

        :raises StoreInputError: a bad relying party id or credential id.
        """
        return cls("fido2", f"{check_rp_id(rp_id)}:{check_credential_id(credential_id)}")

    @classmethod
    def parse(cls, text: str, *, rp_id: str) -> MieRef:
        """:return: the ref written ``badge:<14 hex>`` or ``fido2:<base64url id>`` (the
        credential of ``rp_id``).

        :raises StoreInputError: neither form.
        """
        if not isinstance(text, str) or MIE_REF_PATTERN.fullmatch(text) is None:
            raise StoreInputError(
                "A MIE is badge:<UID in 14 lower-case hex digits> or fido2:<credential id in"
                " base64url>"
            )
        kind, _, value = text.partition(":")
        if kind == "badge":
            return cls.badge(bytes.fromhex(value))
        try:
            credential_id = _from_b64url(value)
        except (ValueError, binascii.Error) as e:
            raise StoreInputError("A fido2: MIE's credential id is not base64url") from e
        return cls.fido2(rp_id, credential_id)

    @property
    def uid(self) -> bytes:
        """:return: a badge's UID.

        :raises StoreInputError: not a badge.
        """
        if self.kind != "badge":
            raise StoreInputError(f"{self} is not a badge")
        return bytes.fromhex(self.subject)

    @property
    def rp_id(self) -> str:
        """:return: a credential's relying party id.

        :raises StoreInputError: not a FIDO2 credential.
        """
        if self.kind != "fido2":
            raise StoreInputError(f"{self} is not a FIDO2 credential")
        return self.subject.rpartition(":")[0]

    @property
    def credential_id(self) -> bytes:
        """:return: a credential's id.

        :raises StoreInputError: not a FIDO2 credential.
        """
        if self.kind != "fido2":
            raise StoreInputError(f"{self} is not a FIDO2 credential")
        return bytes.fromhex(self.subject.rpartition(":")[2])

    def __str__(self) -> str:
        if self.kind == "fido2":
            return f"fido2:{_b64url(self.credential_id)}"
        return f"{self.kind}:{self.subject}"


def check_ref(ref: MieRef) -> MieRef:
    """:return: ``ref``, checked.

    :raises StoreInputError: not a :class:`MieRef` of a badge (7-byte UID in hex) or of a
        FIDO2 credential (``rp_id:hex id``).
    """
    if not isinstance(ref, MieRef) or not isinstance(ref.subject, str):
        raise StoreInputError("A MIE must be a MieRef")
    if ref.kind == "badge":
        if _BADGE_SUBJECT.fullmatch(ref.subject) is None:
            raise StoreInputError("A badge MIE's subject must be its UID in 14 lower-case hex")
        return ref
    if ref.kind == "fido2":
        rp_id, _, hex_id = ref.subject.rpartition(":")
        check_rp_id(rp_id)
        if re.fullmatch(r"(?:[0-9a-f]{2}){1,1023}", hex_id) is None:
            raise StoreInputError("A fido2 MIE's subject must be rp_id:credential id in hex")
        return ref
    raise StoreInputError(f"A MIE's kind must be one of {', '.join(MIE_KINDS)}")


@dataclass(frozen=True)
class Revocation:
    """A MIE revoked: it proves nothing any more.

    :param ref: the MIE.
    :param reason: one of :data:`REVOCATION_REASONS`.
    :param note: a short free text (at most 200 printable characters), or ``None``.
    :param revoked_at: when, in seconds since the epoch.
    :param by: who revoked it (an operator, an API client).
    """

    ref: MieRef
    reason: str
    note: str | None
    revoked_at: float
    by: str


@dataclass(frozen=True)
class TemporaryGrant:
    """A temporary MIE: a spare badge or key granted to one professional for a few days.

    :param ref: the spare MIE.
    :param id_nat: the professional it is granted to (the only idNat it may present).
    :param reason: one of :data:`TEMPORARY_REASONS`.
    :param issued_at: when, in seconds since the epoch.
    :param expires_at: its end, above ``issued_at`` and at most 7 days after it.
    :param max_level: the highest level it gives, ``low`` or ``substantial``.
    :param replaces: the lost MIE's text form (``badge:…``, ``fido2:…``), or ``None``.
    :param by: who granted it.
    """

    ref: MieRef
    id_nat: str
    reason: str
    issued_at: float
    expires_at: float
    max_level: str
    replaces: str | None
    by: str


@dataclass(frozen=True)
class LifecycleRecord:
    """What the store holds of one MIE's lifecycle.

    :param ref: the MIE.
    :param revocation: its revocation, or ``None``.
    :param temporary: its temporary grant, or ``None`` (a permanent MIE).
    """

    ref: MieRef
    revocation: Revocation | None
    temporary: TemporaryGrant | None


def _check_actor(by: str) -> str:
    if not isinstance(by, str) or ACTOR_PATTERN.fullmatch(by) is None:
        raise StoreInputError(
            "Who revoked or granted must be 1 to 128 of A-Z a-z 0-9 . _ : @ / + -"
        )
    return by


def check_revocation(revocation: Revocation) -> Revocation:
    """:return: ``revocation``, every field checked.

    :raises StoreInputError: a field of the wrong type or out of its bound.
    """
    if not isinstance(revocation, Revocation):
        raise StoreInputError("A revocation must be a Revocation")
    check_ref(revocation.ref)
    if revocation.reason not in REVOCATION_REASONS:
        raise StoreInputError(f"Revocation reason must be one of {', '.join(REVOCATION_REASONS)}")
    note = revocation.note
    if note is not None and (
        not isinstance(note, str) or not 0 < len(note) <= MAX_NOTE_LENGTH or not note.isprintable()
    ):
        raise StoreInputError(
            f"Revocation note must be 1 to {MAX_NOTE_LENGTH} printable characters"
        )
    _check_time(revocation.revoked_at, "Revocation time")
    _check_actor(revocation.by)
    return revocation


def check_grant(grant: TemporaryGrant) -> TemporaryGrant:
    """:return: ``grant``, every field checked (at most 7 days, a level below ``high``).

    :raises StoreInputError: a field of the wrong type or out of its bound.
    """
    if not isinstance(grant, TemporaryGrant):
        raise StoreInputError("A temporary grant must be a TemporaryGrant")
    check_ref(grant.ref)
    check_id_nat(grant.id_nat)
    if grant.reason not in TEMPORARY_REASONS:
        raise StoreInputError(f"Temporary reason must be one of {', '.join(TEMPORARY_REASONS)}")
    issued = _check_time(grant.issued_at, "Grant time")
    expires = _check_time(grant.expires_at, "Grant expiry")
    if not issued < expires <= issued + MAX_TEMPORARY_S:
        raise StoreInputError("A temporary grant must expire after its grant and within 7 days")
    if grant.max_level not in TEMPORARY_LEVELS:
        raise StoreInputError("A temporary grant's level cap must be 'low' or 'substantial'")
    if grant.replaces is not None and (
        not isinstance(grant.replaces, str) or MIE_REF_PATTERN.fullmatch(grant.replaces) is None
    ):
        raise StoreInputError("A grant replaces badge:<14 hex> or fido2:<base64url id>")
    _check_actor(grant.by)
    return grant


#: The lifecycle table's columns after ``kind, subject``, in :func:`lifecycle_from_row`'s order.
LIFECYCLE_COLUMNS = (
    "revoked_at",
    "revoke_reason",
    "revoke_note",
    "revoked_by",
    "id_nat",
    "temp_reason",
    "issued_at",
    "expires_at",
    "max_level",
    "replaces",
    "granted_by",
)


def revocation_row(revocation: Revocation) -> tuple[object, ...]:
    """:return: the revocation columns of :data:`LIFECYCLE_COLUMNS` (the first four)."""
    return (
        float(revocation.revoked_at),
        revocation.reason,
        revocation.note,
        revocation.by,
    )


def grant_row(grant: TemporaryGrant) -> tuple[object, ...]:
    """:return: the grant columns of :data:`LIFECYCLE_COLUMNS` (the last seven)."""
    return (
        grant.id_nat,
        grant.reason,
        float(grant.issued_at),
        float(grant.expires_at),
        grant.max_level,
        grant.replaces,
        grant.by,
    )


def lifecycle_from_row(ref: MieRef, row: Sequence[object]) -> LifecycleRecord:
    """:return: the lifecycle of ``ref`` from the 11 columns of :data:`LIFECYCLE_COLUMNS`,
    checked like a new one.

    :raises StoreCorruptError: the row is not what a backend writes.
    """
    try:
        if len(row) != len(LIFECYCLE_COLUMNS):
            raise ValueError(row)
        revocation = None
        if row[0] is not None:
            revocation = check_revocation(
                Revocation(
                    ref=ref,
                    reason=row[1],  # type: ignore[arg-type]
                    note=row[2],  # type: ignore[arg-type]
                    revoked_at=row[0],  # type: ignore[arg-type]
                    by=row[3],  # type: ignore[arg-type]
                )
            )
        grant = grant_from_row(ref, row[4:])
        return LifecycleRecord(ref, revocation, grant)
    except (ValueError, TypeError, StoreInputError) as e:
        raise StoreCorruptError(f"The lifecycle row of {ref} has the wrong types or bounds") from e


def grant_from_row(ref: MieRef, row: Sequence[object]) -> TemporaryGrant | None:
    """:return: the grant of ``ref`` from the 7 grant columns (``None``: all null).

    :raises StoreInputError: a field out of its bound.
    """
    if len(row) != 7:
        raise ValueError(row)
    if row[0] is None:
        return None
    id_nat, reason, issued_at, expires_at, max_level, replaces, by = row
    return check_grant(
        TemporaryGrant(
            ref=ref,
            id_nat=id_nat,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            issued_at=issued_at,  # type: ignore[arg-type]
            expires_at=expires_at,  # type: ignore[arg-type]
            max_level=max_level,  # type: ignore[arg-type]
            replaces=replaces,  # type: ignore[arg-type]
            by=by,  # type: ignore[arg-type]
        )
    )


def credential_grant(
    record: CredentialRecord, temporary: TemporaryGrant | None
) -> TemporaryGrant | None:
    """:return: the grant :meth:`Store.put_credential` writes with ``record``: ``temporary``,
    else the record's own.

    :raises StoreInputError: two different grants, or a grant of another MIE or idNat.
    """
    if temporary is not None and record.temporary is not None and temporary != record.temporary:
        raise StoreInputError("The credential carries another temporary grant than the one given")
    grant = temporary if temporary is not None else record.temporary
    if grant is None:
        return None
    check_grant(grant)
    if grant.ref != MieRef.fido2(record.rp_id, record.credential_id):
        raise StoreInputError(f"The temporary grant is for {grant.ref}, not this credential")
    if not hmac.compare_digest(grant.id_nat.encode(), record.id_nat.encode()):
        raise StoreInputError("The temporary grant is for another idNat than the credential's")
    return grant


def revoked_refusal(revocation: Revocation) -> MieRevokedError:
    """:return: the refusal to register a credential again after its revocation."""
    return MieRevokedError(
        f"{revocation.ref} was revoked ({revocation.reason}): it is never registered again",
        revocation=revocation,
    )


def badge_only(grant: TemporaryGrant) -> MieRef:
    """:return: the grant's ref, a badge's (a credential's grant is written with it, by
    :meth:`Store.put_credential`).

    :raises StoreInputError: a FIDO2 credential's grant.
    """
    if grant.ref.kind != "badge":
        raise StoreInputError(
            "A FIDO2 key's temporary grant is written with it: put_credential(temporary=)"
        )
    return grant.ref


def refuse_grant(found: LifecycleRecord | None, grant: TemporaryGrant) -> None:
    """Refuse a new grant for a revoked MIE, or for one whose grant has not expired at the
    new grant's time.

    :raises StoreInputError: either.
    """
    if found is None:
        return
    if found.revocation is not None:
        raise StoreInputError(f"{found.ref} is revoked: it gets no temporary grant")
    held = found.temporary
    if held is not None and held.expires_at > grant.issued_at:
        raise StoreInputError(f"{found.ref} already has a temporary grant until it expires")


def lifecycle_of(ref: MieRef, found: Sequence[object] | None) -> LifecycleRecord | None:
    """:return: :func:`lifecycle_from_row` of a row read (``None``: no row, or one with
    neither a revocation nor a grant)."""
    if found is None:
        return None
    record = lifecycle_from_row(ref, found)
    if record.revocation is None and record.temporary is None:
        return None
    return record


def stored_revocation(ref: MieRef, found: Sequence[object] | None) -> Revocation:
    """:return: the revocation a backend's revoking upsert returned (its four columns).

    :raises StoreCorruptError: not a revocation.
    """
    if found is None or len(found) != 4:
        raise StoreCorruptError(f"The revocation of {ref} did not read back")
    record = lifecycle_from_row(ref, (*found, *(None,) * 7))
    if record.revocation is None:
        raise StoreCorruptError(f"The revocation of {ref} did not read back")
    return record.revocation


# --- audit (issue 11): one hash chain per node ---------------------------------------------

#: A node's name in the audit table.
NODE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: The longest audit line (a record is at most 16 KiB of UTF-8).
MAX_AUDIT_LINE = 16384
#: A record digest: SHA-256 in lower-case hex.
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
#: The most lines :meth:`Store.audit_lines` returns at once.
MAX_AUDIT_LIMIT = 10000


def check_node(node: str) -> str:
    """:return: ``node``, checked.

    :raises StoreInputError: not 1 to 64 of ``A-Za-z0-9._:-``.
    """
    if not isinstance(node, str) or NODE_PATTERN.fullmatch(node) is None:
        raise StoreInputError("Node name must be 1 to 64 characters among A-Z a-z 0-9 . _ : -")
    return node


def check_audit(node: str, seq: int, line: str, digest: str) -> None:
    """Check an audit record before it is appended.

    :raises StoreInputError: a bad node, a sequence number not from 1 to 2**63 - 1, a line
        that is not one line of at most 16 KiB of UTF-8 without NUL, or a digest that is not
        64 lower-case hex digits.
    """
    check_node(node)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq < 2**63:
        raise StoreInputError("Audit sequence number must be a number from 1 to 2**63 - 1")
    if (
        not isinstance(line, str)
        or not line
        or "\n" in line
        or "\r" in line
        or "\x00" in line
        or not _encodes(line)
        or len(line.encode("utf-8")) > MAX_AUDIT_LINE
    ):
        raise StoreInputError(f"Audit line must be one line of 1 to {MAX_AUDIT_LINE} bytes, no NUL")
    if not isinstance(digest, str) or DIGEST_PATTERN.fullmatch(digest) is None:
        raise StoreInputError("Audit digest must be 64 lower-case hex digits")


def check_audit_range(after: int, limit: int) -> None:
    """:raises StoreInputError: ``after`` not from 0, or ``limit`` not from 1 to 10000."""
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
        raise StoreInputError("Audit 'after' must be a sequence number from 0")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_AUDIT_LIMIT:
        raise StoreInputError(f"Audit limit must be a number from 1 to {MAX_AUDIT_LIMIT}")


#: :func:`counter_refusal`'s verdicts besides an error: suspend the credential, or decide again.
SUSPEND = "suspend"
RETRY = "retry"


def counter_refusal(
    rp_id: str,
    credential_id: bytes,
    counter: int,
    found: tuple[int, str | None] | None,
    *,
    allow_zero: bool,
) -> MieError | str:
    """Why :meth:`Store.advance_counter`'s conditional update changed nothing, from the
    ``(sign_count, suspended)`` read after it (``None``: no row). Every backend shares it.

    :return: the error to raise; :data:`SUSPEND`: the counter went back, suspend the
        credential (only if not suspended yet), then raise :func:`clone_suspended`;
        :data:`RETRY`: the row changed between the update and the read (deleted and
        registered again): decide again.
    """
    if found is None:
        return unknown_credential(rp_id, credential_id)
    stored, suspended = found
    if suspended is not None:
        return CloneSuspectedError(
            f"Assertion refused: {credential_name(rp_id, credential_id)}"
            f" is suspended ({suspended})",
            suspended=suspended,
        )
    if counter == 0 and stored == 0:
        if allow_zero:
            return RETRY
        return CounterUnsupportedError(
            f"No signature counter (0 after 0) on {credential_name(rp_id, credential_id)}:"
            " no clone detection, and the policy requires it"
        )
    if counter < stored:
        return SUSPEND
    if counter == stored:
        return CloneSuspectedError(
            f"Signature counter {counter} already seen: a replayed assertion or a cloned key"
        )
    return RETRY


def clone_suspended(rp_id: str, credential_id: bytes, counter: int) -> CloneSuspectedError:
    """:return: the refusal of a counter that went back (the credential is now suspended)."""
    return CloneSuspectedError(
        f"Signature counter {counter} went back: {credential_name(rp_id, credential_id)}"
        " suspended as a suspected clone",
        suspended="clone-suspected",
    )


def credential_name(rp_id: str, credential_id: bytes) -> str:
    """:return: how messages name a credential: its id's first 8 bytes in hex and its rp_id."""
    shown = credential_id[:8].hex() + ("..." if len(credential_id) > 8 else "")
    return f"credential {shown} of {rp_id}"


def unknown_credential(rp_id: str, credential_id: bytes) -> CredentialUnknownError:
    """:return: the refusal of a credential the store does not hold."""
    return CredentialUnknownError(f"No {credential_name(rp_id, credential_id)} is registered")


def credential_from_row(row: Sequence[object]) -> CredentialRecord:
    """:return: the record of a row, read back through the same checks as a new one.

    :raises StoreCorruptError: the row is not what a backend's ``put_credential`` writes (the
        15 columns in the order of :class:`CredentialRecord`, the credential id in hex), with
        or without the 7 grant columns of its lifecycle row (all null: no grant).
    """
    try:
        grant_columns = row[15:]
        row = row[:15]
        (
            rp_id,
            hex_id,
            user_handle,
            public_key,
            alg,
            aaguid,
            sign_count,
            backup,
            attestation,
            certification,
            id_nat,
            test,
            created_at,
            last_used_at,
            suspended,
        ) = row
        if not (isinstance(hex_id, str) and backup in (0, 1) and test in (0, 1)):
            raise ValueError(hex_id)
        record = CredentialRecord(
            rp_id=rp_id,  # type: ignore[arg-type]
            credential_id=bytes.fromhex(hex_id),
            user_handle=user_handle,  # type: ignore[arg-type]
            public_key=public_key,  # type: ignore[arg-type]
            alg=alg,  # type: ignore[arg-type]
            aaguid=aaguid,  # type: ignore[arg-type]
            sign_count=sign_count,  # type: ignore[arg-type]
            backup_eligible=bool(backup),
            attestation=attestation,  # type: ignore[arg-type]
            certification=certification,  # type: ignore[arg-type]
            id_nat=id_nat,  # type: ignore[arg-type]
            test=bool(test),
            created_at=created_at,  # type: ignore[arg-type]
            last_used_at=last_used_at,  # type: ignore[arg-type]
            suspended=suspended,  # type: ignore[arg-type]
        )
        if grant_columns:
            ref = MieRef.fido2(record.rp_id, record.credential_id)
            record = dataclasses.replace(record, temporary=grant_from_row(ref, grant_columns))
        return check_credential(record)
    except (ValueError, TypeError, StoreInputError) as e:
        raise StoreCorruptError("A FIDO2 credential row has the wrong types or bounds") from e


class Store(ABC):
    """Shared state of a verifier, safe across processes and (for PostgreSQL) nodes.

    Every method is one atomic step on the backend, with a deadline; a backend failure raises
    :class:`~mie.store.errors.StoreError` and decides nothing. A store is a context manager
    that closes itself.
    """

    @abstractmethod
    def put_secret(self, badge: str, secret_hash: str, *, replace: bool = False) -> None:
        """Enrol ``secret_hash`` for ``badge`` with no failure counted.

        :param badge: the badge.
        :param secret_hash: the hash to store (opaque to the store).
        :param replace: replace an enrolled hash (a new generation) instead of refusing.
        :raises AlreadyEnrolledError: the badge is enrolled and ``replace`` is false.
        """

    @abstractmethod
    def reserve_guess(self, badge: str, limit: int) -> Reservation:
        """Count one guess for ``badge`` unless ``limit`` failures are already counted.

        :param badge: the badge.
        :param limit: the lockout, in failures.
        :return: the reservation to check the guess with.
        :raises NotEnrolledError: no hash is enrolled for the badge.
        :raises SecondFactorLockedError: ``limit`` failures are counted; nothing was reserved.
        """

    @abstractmethod
    def forgive_guesses(self, reservation: Reservation) -> None:
        """Forgive every guess of the badge up to the reservation's (a success).

        :param reservation: the reservation of the guess that matched.
        :raises SecondFactorChangedError: the badge was re-enrolled or removed meanwhile.
        """

    @abstractmethod
    def clear_failures(self, badge: str) -> None:
        """Forgive every guess counted for ``badge`` (an operator's unlock); the hash stays.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def delete_secret(self, badge: str) -> None:
        """Remove ``badge``'s hash and counter.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def secret_status(self, badge: str) -> SecretStatus:
        """:return: the failures and enrolment of ``badge``.

        :raises NotEnrolledError: no hash is enrolled for the badge.
        """

    @abstractmethod
    def issue_nonce(
        self,
        nonce: bytes,
        lifetime: float,
        *,
        binding: bytes | None = None,
        context: str | None = None,
    ) -> None:
        """Keep ``nonce`` for ``lifetime`` seconds, for one :meth:`consume_nonce`.

        Expired nonces are purged here. PostgreSQL measures lifetimes on the database's clock,
        which every node shares; SQLite on the host's.

        :param nonce: the challenge, 16 to 64 random bytes.
        :param lifetime: seconds until it expires.
        :param binding: the session the nonce is bound to (1 to 64 bytes, e.g. a digest of the
            caller and its session); only a consumer presenting the same binding gets it.
        :param context: opaque text kept with the nonce (at most 2048 characters), returned by
            :meth:`consume_nonce`: the ceremony state another node needs.
        :raises StoreInputError: a bad nonce, lifetime, binding or context, or a nonce already
            issued.
        """

    @abstractmethod
    def consume_nonce(self, nonce: bytes, *, binding: bytes | None = None) -> str | None:
        """Use up ``nonce``: of several nodes consuming it at once, exactly one succeeds.

        The first use consumes the nonce whatever its outcome: a nonce presented with another
        binding (or with one when issued without, or the reverse) is deleted too, and refused.

        :param binding: the binding presented, compared in constant time with the issued one.
        :return: the context issued with the nonce (``None`` if none).
        :raises NonceUnknownError: never issued, already consumed, expired, or bound to another
            binding (one outcome).
        :raises StoreInputError: not 16 to 64 bytes, or a bad binding.
        """

    def ping(self) -> None:
        """Check the backend answers (a health check): one trivial query, with the deadlines of
        every operation.

        :raises StoreError: the backend is unreachable or failed.
        """
        raise StoreError(f"{type(self).__name__} cannot be checked")

    def put_credential(
        self, record: CredentialRecord, *, temporary: TemporaryGrant | None = None
    ) -> None:
        """Register a FIDO2 credential, in one atomic transaction with its temporary grant.

        The credential methods are not abstract, so a store written before them keeps working:
        this default (and every one below) raises :class:`~mie.store.errors.StoreError`.

        :param temporary: register a temporary credential with this grant (its ref is the
            credential's, its idNat the credential's); default: ``record.temporary``.
        :raises StoreInputError: a field out of its bound, or a grant of another MIE or idNat.
        :raises AlreadyRegisteredError: a credential with this rp_id and id is stored; nothing
            was written (no grant either).
        :raises MieRevokedError: the credential was revoked before (deleted since): a revoked
            key is never registered again.
        """
        raise _no_credentials(self)

    def get_credential(self, rp_id: str, credential_id: bytes) -> CredentialRecord:
        """:return: the credential registered for ``rp_id`` and ``credential_id``, suspended
        or not, with its temporary grant (``temporary``).

        :raises CredentialUnknownError: none is stored.
        """
        raise _no_credentials(self)

    def advance_counter(
        self, rp_id: str, credential_id: bytes, counter: int, *, allow_zero: bool
    ) -> CredentialRecord:
        """Accept an assertion's signature counter: of several verifiers handed the same
        assertion at once, exactly one advances it.

        One atomic conditional update raises the stored counter to ``counter`` when it is
        above it and the credential is not suspended. Otherwise: a counter below the stored one
        suspends the credential (``clone-suspected``); an equal one (a replay, or the loser of a
        race) is refused and suspends nothing; 0 with 0 stored is accepted only under
        ``allow_zero`` (a key without a counter: no clone detection). Call it only after the
        assertion's signature is verified.

        :return: the credential as updated (``sign_count`` and ``last_used_at``).
        :raises CredentialUnknownError: no credential is stored.
        :raises CloneSuspectedError: the counter is not above the stored one, or the
            credential is suspended.
        :raises CounterUnsupportedError: 0 with 0 stored and not ``allow_zero``.
        """
        raise _no_credentials(self)

    def suspend_credential(self, rp_id: str, credential_id: bytes, reason: str) -> None:
        """Suspend a credential: every later assertion is refused. ``revoked`` replaces a
        ``clone-suspected`` suspension; ``clone-suspected`` never replaces ``revoked``.

        :raises StoreInputError: a reason other than ``clone-suspected`` or ``revoked``.
        :raises CredentialUnknownError: no credential is stored.
        """
        raise _no_credentials(self)

    def delete_credential(self, rp_id: str, credential_id: bytes) -> None:
        """Remove a credential and its temporary grant (a revocation stays).

        :raises CredentialUnknownError: no credential is stored.
        """
        raise _no_credentials(self)

    def credentials_of(self, id_nat: str, rp_id: str | None = None) -> tuple[CredentialRecord, ...]:
        """:return: the credentials registered for ``id_nat`` (for ``rp_id`` only, if given),
        oldest first."""
        raise _no_credentials(self)

    def revoke(self, revocation: Revocation) -> Revocation:
        """Revoke a MIE, idempotently: a MIE already revoked keeps its first revocation.

        A FIDO2 credential is suspended ``revoked`` in the same transaction, so the conditional
        update of :meth:`advance_counter` refuses it from then on, on every node.

        :return: the revocation stored (the first one, if the MIE was revoked already).
        :raises StoreInputError: a field out of its bound.
        :raises CredentialUnknownError: a FIDO2 credential the store does not hold.
        """
        raise _no_lifecycle(self)

    def grant_temporary(self, grant: TemporaryGrant) -> None:
        """Write a temporary grant for a MIE (a badge, before it is enrolled).

        :raises StoreInputError: a field out of its bound, the MIE is revoked, or it has a grant
            that has not expired at ``grant.issued_at``.
        """
        raise _no_lifecycle(self)

    def lifecycle(self, ref: MieRef) -> LifecycleRecord | None:
        """:return: the revocation and temporary grant of ``ref``, or ``None`` (a permanent MIE,
        not revoked). Never cached: read at every verification.

        :raises StoreInputError: not a :class:`MieRef`.
        """
        raise _no_lifecycle(self)

    def audit_head(self, node: str) -> tuple[int, str] | None:
        """:return: the sequence number and digest of ``node``'s last audit record, or ``None``
        (no record yet)."""
        raise _no_audit(self)

    def append_audit(self, node: str, seq: int, line: str, digest: str) -> None:
        """Append one audit record to ``node``'s chain, in one insert.

        :raises StoreInputError: a bad node, sequence number, line or digest.
        :raises AuditConflictError: ``(node, seq)`` is taken (another writer of the same chain
            came first); nothing was written.
        """
        raise _no_audit(self)

    def audit_lines(self, node: str, *, after: int = 0, limit: int = 1000) -> tuple[str, ...]:
        """:return: the lines of ``node``'s chain with a sequence number above ``after``, in
        order, at most ``limit`` (1 to 10000)."""
        raise _no_audit(self)

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s); the store is not used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _no_credentials(store: Store) -> StoreError:
    return StoreError(f"{type(store).__name__} keeps no FIDO2 credentials")


def _no_lifecycle(store: Store) -> StoreError:
    return StoreError(f"{type(store).__name__} keeps no MIE lifecycle")


def _no_audit(store: Store) -> StoreError:
    return StoreError(f"{type(store).__name__} keeps no audit trail")


def audit_conflict(node: str, seq: int) -> AuditConflictError:
    """:return: the refusal of a record whose place is taken (or not next) in its chain."""
    return AuditConflictError(
        f"Audit record {seq} of node {node} is taken, or not the next of its chain"
    )


def audit_head_of(node: str, found: Sequence[object] | None) -> tuple[int, str] | None:
    """:return: a head row read, checked.

    :raises StoreCorruptError: not ``(seq, digest)``.
    """
    if found is None:
        return None
    seq, digest = found
    if (
        isinstance(seq, bool)
        or not isinstance(seq, int)
        or not isinstance(digest, str)
        or DIGEST_PATTERN.fullmatch(digest) is None
    ):
        raise StoreCorruptError(f"The audit head of node {node} has the wrong types")
    return seq, digest


def audit_lines_of(node: str, rows: Sequence[Sequence[object]]) -> tuple[str, ...]:
    """:return: the lines of rows read, checked.

    :raises StoreCorruptError: a line that is not text.
    """
    lines = tuple(row[0] for row in rows)
    if not all(isinstance(line, str) for line in lines):
        raise StoreCorruptError(f"An audit line of node {node} is not text")
    return lines  # type: ignore[return-value]
