"""The evidence a DESFire badge session leaves: its transcript (plan D3).

:class:`DesfireSessionEvidence` is registered in the :class:`mie.evidence.Evidence` union under
the type ``desfire-session`` when this module is imported. It holds what the reader side read
(the real UID, the record file, the originality signature) and every APDU exchanged, so a
verifier holding the keys can re-run the reader side of the session against it, and one without
them can still check the record::

    {"type": "desfire-session", "nonce": hex, "origin": str, "scheme": "ev2" | "ev1-aes" |
     "legacy", "aid": hex3, "uid": hex7, "uid_source": "get-card-uid" | "anticollision" |
     "div-file", "record": hex176, "originality": hex56 | null,
     "transcript": [{"c": hex, "r": hex}, ...], "revocation": null}

The transcript has 1 to :data:`MAX_EXCHANGES` exchanges, each command of 4 to
:data:`MAX_EXCHANGE_BYTES` bytes and each response (data and status word) of 2 to
:data:`MAX_EXCHANGE_BYTES`. Nothing in it is a key: secure messaging leaves only ciphertext and
MACs, and RndA is derived from the request (plan D4).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mie.core.errors import EvidenceFormatError
from mie.desfire.config import UidSource
from mie.desfire.crypto import ORIGINALITY_SIGNATURE_SIZE
from mie.desfire.record import AID_SIZE, RECORD_FILE_SIZE, UID_SIZE
from mie.evidence import Evidence, check_fields, hex_field, str_field
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES, check_origin

MAX_EXCHANGES = 32
"""Most APDU exchanges a badge session transcript may hold."""
MAX_EXCHANGE_BYTES = 300
"""Largest command, and largest response, of a transcript exchange."""
_MIN_COMMAND = 4
_MIN_RESPONSE = 2
_COMMAND_SIZES = range(_MIN_COMMAND, MAX_EXCHANGE_BYTES + 1)
_RESPONSE_SIZES = range(_MIN_RESPONSE, MAX_EXCHANGE_BYTES + 1)
_NONCE_SIZES = range(MIN_NONCE_BYTES, MAX_NONCE_BYTES + 1)


class BadgeScheme(enum.StrEnum):
    """The secure messaging of a badge session."""

    EV2 = "ev2"
    """AuthenticateEV2First/NonFirst and EV2 secure messaging."""
    EV1_AES = "ev1-aes"
    """EV1 AES authentication (``AA``) and EV1 secure messaging."""
    LEGACY = "legacy"
    """DES/3DES (only under the legacy opt-in; no level)."""


@dataclass(frozen=True)
class TranscriptExchange:
    """One APDU of a badge session and its answer.

    :param command: the command APDU as sent.
    :param response: the response data and status word.
    :raises ValueError: a size outside the bounds of the module docstring.
    :raises TypeError: not bytes.
    """

    command: bytes
    response: bytes

    def __post_init__(self) -> None:
        for name, sizes in (("command", _COMMAND_SIZES), ("response", _RESPONSE_SIZES)):
            value = getattr(self, name)
            if not isinstance(value, bytes):
                raise TypeError(f"The transcript {name} must be bytes")
            if len(value) not in sizes:
                raise ValueError(
                    f"The transcript {name} has {len(value)} bytes, not {sizes.start} to "
                    f"{sizes.stop - 1}"
                )

    def to_json(self) -> dict[str, str]:
        """:return: ``{"c": hex, "r": hex}``."""
        return {"c": self.command.hex(), "r": self.response.hex()}


@Evidence.register
@dataclass(frozen=True, repr=False)
class DesfireSessionEvidence(Evidence):
    """What a badge session produced for one request; see the module docstring.

    :param nonce: the request's nonce.
    :param origin: the request's origin.
    :param scheme: the secure messaging used.
    :param aid: the application the record was read from (3 bytes, wire order).
    :param uid: the badge's real UID as the session established it (7 bytes).
    :param uid_source: how the session established it.
    :param record: the identity record file read (176 bytes).
    :param originality: the originality signature read (56 bytes, in clear: deciphered when
        it was read inside the session, ``originality_read`` ``full``), or ``None`` when not
        read. The transcript holds it as the badge sent it (enciphered under ``full``).
    :param transcript: every exchange of the session, in order.
    :raises ValueError: a field of the wrong size, or an origin that is not one.
    :raises TypeError: a field of the wrong type.
    """

    type: ClassVar[str] = "desfire-session"
    nonce: bytes
    origin: str
    scheme: BadgeScheme
    aid: bytes
    uid: bytes
    uid_source: UidSource
    record: bytes
    originality: bytes | None
    transcript: tuple[TranscriptExchange, ...]

    def __post_init__(self) -> None:
        for name in ("nonce", "aid", "uid", "record"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"The {name} must be bytes")
        if not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(
                f"The nonce has {len(self.nonce)} bytes, not {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
            )
        check_origin(self.origin)
        if not isinstance(self.scheme, BadgeScheme):
            raise TypeError("The scheme must be a BadgeScheme")
        if not isinstance(self.uid_source, UidSource):
            raise TypeError("The uid_source must be a UidSource")
        for name, size in (("aid", AID_SIZE), ("uid", UID_SIZE), ("record", RECORD_FILE_SIZE)):
            if len(getattr(self, name)) != size:
                raise ValueError(f"The {name} has {len(getattr(self, name))} bytes, not {size}")
        if self.originality is not None and (
            not isinstance(self.originality, bytes)
            or len(self.originality) != ORIGINALITY_SIGNATURE_SIZE
        ):
            raise ValueError(
                f"The originality signature is not {ORIGINALITY_SIGNATURE_SIZE} bytes or None"
            )
        if not isinstance(self.transcript, tuple) or not all(
            isinstance(e, TranscriptExchange) for e in self.transcript
        ):
            raise TypeError("The transcript must be a tuple of TranscriptExchange")
        if not 0 < len(self.transcript) <= MAX_EXCHANGES:
            raise ValueError(
                f"The transcript has {len(self.transcript)} exchanges, not 1 to {MAX_EXCHANGES}"
            )

    def to_json(self) -> dict[str, Any]:
        """:return: the ``evidence`` object (``revocation`` null: a badge has no revocation
        status)."""
        return {
            "type": self.type,
            "nonce": self.nonce.hex(),
            "origin": self.origin,
            "scheme": self.scheme.value,
            "aid": self.aid.hex(),
            "uid": self.uid.hex(),
            "uid_source": self.uid_source.value,
            "record": self.record.hex(),
            "originality": None if self.originality is None else self.originality.hex(),
            "transcript": [e.to_json() for e in self.transcript],
            "revocation": None,
        }

    @classmethod
    def _parse(cls, obj: Mapping[str, Any]) -> DesfireSessionEvidence:
        what = "evidence"
        required = (
            "type",
            "nonce",
            "origin",
            "scheme",
            "aid",
            "uid",
            "uid_source",
            "record",
            "originality",
            "transcript",
        )
        check_fields(obj, what, required, ("revocation",))
        if obj.get("revocation") is not None:
            raise EvidenceFormatError(f"{what}.revocation is not null (a badge has none)")
        nonce = hex_field(obj, "nonce", what, sizes=_NONCE_SIZES)
        origin = str_field(obj, "origin", what)
        scheme = _choice(obj, "scheme", BadgeScheme)
        aid = hex_field(obj, "aid", what, sizes=range(AID_SIZE, AID_SIZE + 1))
        uid = hex_field(obj, "uid", what, sizes=range(UID_SIZE, UID_SIZE + 1))
        uid_source = _choice(obj, "uid_source", UidSource)
        record = hex_field(obj, "record", what, sizes=range(RECORD_FILE_SIZE, RECORD_FILE_SIZE + 1))
        originality = None
        if obj["originality"] is not None:
            sizes = range(ORIGINALITY_SIGNATURE_SIZE, ORIGINALITY_SIGNATURE_SIZE + 1)
            originality = hex_field(obj, "originality", what, sizes=sizes)
        transcript = _transcript(obj["transcript"])
        try:
            return cls(nonce, origin, scheme, aid, uid, uid_source, record, originality, transcript)
        except (ValueError, TypeError) as e:
            raise EvidenceFormatError(f"{what}: {e}") from e

    def __repr__(self) -> str:
        return (
            f"DesfireSessionEvidence(scheme={self.scheme.value}, aid={self.aid.hex()}, "
            f"uid={self.uid.hex()}, uid_source={self.uid_source.value}, "
            f"originality={self.originality is not None}, exchanges={len(self.transcript)})"
        )


def _choice(obj: Mapping[str, Any], key: str, kind: type[enum.StrEnum]) -> Any:
    value = obj[key]
    if not isinstance(value, str) or value not in {m.value for m in kind}:
        choices = ", ".join(m.value for m in kind)
        raise EvidenceFormatError(f"evidence.{key} is not one of {choices}")
    return kind(value)


def _transcript(value: object) -> tuple[TranscriptExchange, ...]:
    if not isinstance(value, list):
        raise EvidenceFormatError("evidence.transcript is not a list")
    if not 0 < len(value) <= MAX_EXCHANGES:
        raise EvidenceFormatError(
            f"evidence.transcript has {len(value)} exchanges, not 1 to {MAX_EXCHANGES}"
        )
    exchanges = []
    for index, item in enumerate(value):
        what = f"evidence.transcript[{index}]"
        fields = check_fields(item, what, ("c", "r"))
        command = hex_field(fields, "c", what, sizes=_COMMAND_SIZES)
        response = hex_field(fields, "r", what, sizes=_RESPONSE_SIZES)
        exchanges.append(TranscriptExchange(command, response))
    return tuple(exchanges)


__all__ = [
    "MAX_EXCHANGES",
    "MAX_EXCHANGE_BYTES",
    "BadgeScheme",
    "DesfireSessionEvidence",
    "TranscriptExchange",
]
