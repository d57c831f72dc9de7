"""Evidence: what an authenticator produced, for a verifier to check on its own.

:class:`Evidence` is a tagged union: each kind has a ``type`` (``x509-signature`` here,
``desfire-session`` in :mod:`mie.desfire.evidence` and ``webauthn-assertion`` in
:mod:`mie.fido.evidence`, each loaded when :meth:`Evidence.from_json` first meets one),
registered with :meth:`Evidence.register`, and a
strict :meth:`~Evidence.to_json` / :meth:`Evidence.from_json` round trip. Every piece of
evidence carries the ``nonce`` and ``origin`` of the request it answers, so
:func:`mie.verify_evidence` can refuse one made for another relying party.

Valid JSON of the wrong shape (an unknown ``type``, a missing or extra field, bad hex, a value
of the wrong type or size) raises :class:`~mie.errors.EvidenceFormatError`.
"""

from __future__ import annotations

import abc
import builtins
import importlib
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mie.core import strictjson
from mie.core.errors import EvidenceFormatError, JsonFormatError, VerificationError
from mie.request import MAX_NONCE_BYTES, MIN_NONCE_BYTES, check_origin
from mie.trust.parse import MAX_CERTIFICATE_BYTES, der_to_pem, pem_to_der

if TYPE_CHECKING:
    from mie.result import AuthenticatorInfo

MAX_EVIDENCE_BYTES = 1 << 20
"""Largest evidence (or saved result) file :func:`load_evidence_file` reads."""
CHALLENGE_BYTES = 64
"""Size of a bound challenge, ``SHA-256(origin) ‖ SHA-256(nonce)``."""
MAX_SIGNATURE_BYTES = 1024
"""Largest signature accepted (an RSA-8192 signature)."""
MAX_CHAIN = 10
"""Most certificates an evidence chain may hold: the longest path the verifier builds by
default (the leaf, :data:`mie.trust.verify.DEFAULT_MAX_DEPTH` intermediates, the anchor), so a
verified result reads back."""
_SHOWN = 40
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
# Kinds defined outside this module: the module that registers each, imported on first use.
_LAZY_TYPES = {
    "desfire-session": "mie.desfire.evidence",
    "webauthn-assertion": "mie.fido.evidence",
}

E = TypeVar("E", bound="Evidence")


def shown(value: object) -> str:
    """:return: ``value`` quoted for a one-line message, cut when long."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def check_fields(
    obj: object, what: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    """Check a JSON value is an object with exactly ``required`` keys, plus any of ``optional``.

    :param obj: the parsed JSON value.
    :param what: what the object is, for messages (``evidence``, ``authenticator``...).
    :return: ``obj``.
    :raises EvidenceFormatError: not an object, a key missing, or a key not allowed.
    """
    if not isinstance(obj, dict):
        raise EvidenceFormatError(f"The {what} is not a JSON object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise EvidenceFormatError(f"The {what} has no {shown(missing[0])} field")
    allowed = {*required, *optional}
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        raise EvidenceFormatError(f"The {what} has an unexpected field {shown(extra[0])}")
    return obj


def hex_field(obj: Mapping[str, Any], key: str, what: str, *, sizes: range) -> bytes:
    """:return: the bytes of the lower-case hex string ``obj[key]``, whose size is in ``sizes``.

    :raises EvidenceFormatError: not a string, not lower-case hex, or of another size.
    """
    value = obj[key]
    if isinstance(value, str) and len(value) > 2 * (sizes.stop - 1):
        # Refused before it is scanned or decoded: a caller's JSON may be of any size.
        raise EvidenceFormatError(f"{what}.{key} has over {sizes.stop - 1} bytes of hex")
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EvidenceFormatError(f"{what}.{key} is not lower-case hex")
    data = bytes.fromhex(value)
    if len(data) not in sizes:
        raise EvidenceFormatError(f"{what}.{key} has {len(data)} bytes, {_sizes(sizes)}")
    return data


def _sizes(sizes: range) -> str:
    if len(sizes) == 1:
        return f"not {sizes.start}"
    return f"not {sizes.start} to {sizes.stop - 1}"


def str_field(obj: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> Any:
    """:return: ``obj[key]``, a string (or ``None`` when ``optional``).

    :raises EvidenceFormatError: another type.
    """
    value = obj[key]
    if isinstance(value, str) or (optional and value is None):
        return value
    wanted = "a string or null" if optional else "a string"
    raise EvidenceFormatError(f"{what}.{key} is not {wanted}")


def _checked(what: str, build: Callable[[], E]) -> E:
    # Constructors check their arguments with ValueError/TypeError (asn1crypto style): read from
    # JSON, the same failures are a format error of the file.
    try:
        return build()
    except (ValueError, TypeError) as e:
        raise EvidenceFormatError(f"{what}: {e}") from e


class Evidence(abc.ABC):
    """What an authenticator produced for one request; see the module docstring.

    :ivar type: the tag of the kind, in the JSON ``type`` field.
    :ivar nonce: the nonce of the request it answers.
    :ivar origin: the origin of the request it answers.
    """

    type: ClassVar[str]
    # ``type`` is the tag inside this class body: the builtin is spelt builtins.type.
    _TYPES: ClassVar[dict[str, builtins.type[Evidence]]] = {}
    nonce: bytes
    origin: str

    @staticmethod
    def register(kind: builtins.type[E]) -> builtins.type[E]:
        """Class decorator: make ``kind`` readable by :meth:`from_json` under ``kind.type``.

        :raises ValueError: another class already has that type.
        """
        known = Evidence._TYPES.get(kind.type)
        if known is not None and known is not kind:
            raise ValueError(f"Evidence type {kind.type!r} is already {known.__name__}")
        Evidence._TYPES[kind.type] = kind
        return kind

    @abc.abstractmethod
    def to_json(self) -> dict[str, Any]:
        """:return: the ``evidence`` object of the JSON contract (``type`` first)."""

    @classmethod
    def from_json(cls, obj: object) -> Evidence:
        """Read evidence from its parsed JSON, dispatching on ``type``.

        :param obj: the parsed JSON value.
        :return: the evidence, of the class its ``type`` names (a subclass of ``cls``).
        :raises EvidenceFormatError: not an object, an unknown ``type``, or a bad field.
        """
        if not isinstance(obj, dict):
            raise EvidenceFormatError("The evidence is not a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise EvidenceFormatError("The evidence has no string 'type' field")
        target = Evidence._TYPES.get(kind)
        if target is None and kind in _LAZY_TYPES:
            importlib.import_module(_LAZY_TYPES[kind])
            target = Evidence._TYPES.get(kind)
        if target is None:
            raise EvidenceFormatError(f"Unknown evidence type {shown(kind)}")
        if not issubclass(target, cls):
            raise EvidenceFormatError(f"Evidence type {shown(kind)} is not {cls.__name__}")
        return target._parse(obj)

    @classmethod
    @abc.abstractmethod
    def _parse(cls, obj: Mapping[str, Any]) -> Evidence:
        """Read the fields of this kind (``type`` already matched)."""


_REVOCATION_VALUES = (None, "good", "revoked", "unknown")
_NONCE_SIZES = range(MIN_NONCE_BYTES, MAX_NONCE_BYTES + 1)
_CHALLENGE_SIZES = range(CHALLENGE_BYTES, CHALLENGE_BYTES + 1)
_SIGNATURE_SIZES = range(1, MAX_SIGNATURE_BYTES + 1)


@Evidence.register
@dataclass(frozen=True)
class X509SignatureEvidence(Evidence):
    """A signature made with a certificate's key over the bound challenge (CPx cards).

    :param nonce: the request's nonce.
    :param origin: the request's origin.
    :param challenge: the signed bytes, ``SHA-256(origin) ‖ SHA-256(nonce)`` when honest
        (:func:`mie.verify_evidence` checks it): the card signs their PKCS#1 v1.5 SHA-256
        DigestInfo.
    :param signature: the signature.
    :param chain: DER certificates, leaf first (a card gives its leaf; a verified result the
        whole path).
    :raises ValueError: a field of the wrong size, or an origin that is not one.
    :raises TypeError: a field of the wrong type.
    """

    type: ClassVar[str] = "x509-signature"
    nonce: bytes
    origin: str
    challenge: bytes
    signature: bytes
    chain: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for name in ("nonce", "challenge", "signature"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"The {name} must be bytes")
        if not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(
                f"The nonce has {len(self.nonce)} bytes, not {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
            )
        check_origin(self.origin)
        if len(self.challenge) != CHALLENGE_BYTES:
            raise ValueError(
                f"The challenge has {len(self.challenge)} bytes, not {CHALLENGE_BYTES}"
            )
        if not 0 < len(self.signature) <= MAX_SIGNATURE_BYTES:
            raise ValueError(
                f"The signature has {len(self.signature)} bytes, not 1 to {MAX_SIGNATURE_BYTES}"
            )
        _check_chain(self.chain)

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"type", "challenge", "nonce", "origin", "signature", "chain": [PEM],
        "revocation": null}`` (an :class:`~mie.AuthResult` fills ``revocation``)."""
        return {
            "type": self.type,
            "challenge": self.challenge.hex(),
            "nonce": self.nonce.hex(),
            "origin": self.origin,
            "signature": self.signature.hex(),
            "chain": [der_to_pem(der) for der in self.chain],
            "revocation": None,
        }

    @classmethod
    def _parse(cls, obj: Mapping[str, Any]) -> X509SignatureEvidence:
        what = "evidence"
        required = ("type", "challenge", "nonce", "origin", "signature", "chain")
        check_fields(obj, what, required, ("revocation",))
        # The revocation status a producer reported is not evidence: the verifier finds its own.
        if obj.get("revocation") not in _REVOCATION_VALUES:
            raise EvidenceFormatError(f"{what}.revocation is not good, revoked, unknown or null")
        nonce = hex_field(obj, "nonce", what, sizes=_NONCE_SIZES)
        challenge = hex_field(obj, "challenge", what, sizes=_CHALLENGE_SIZES)
        signature = hex_field(obj, "signature", what, sizes=_SIGNATURE_SIZES)
        origin = str_field(obj, "origin", what)
        chain = _chain_from_json(obj["chain"])
        return _checked(what, lambda: cls(nonce, origin, challenge, signature, chain))


def _check_chain(chain: object) -> None:
    if not isinstance(chain, tuple) or not all(isinstance(c, bytes) for c in chain):
        raise TypeError("The chain must be a tuple of DER bytes")
    if not 1 <= len(chain) <= MAX_CHAIN:
        raise ValueError(f"The chain has {len(chain)} certificates, not 1 to {MAX_CHAIN}")
    if any(not 0 < len(c) <= MAX_CERTIFICATE_BYTES for c in chain):
        raise ValueError(f"A chain certificate is empty or over {MAX_CERTIFICATE_BYTES} bytes")


def _chain_from_json(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise EvidenceFormatError("evidence.chain is not a list of PEM strings")
    if not 1 <= len(value) <= MAX_CHAIN:
        raise EvidenceFormatError(
            f"evidence.chain has {len(value)} certificates, not 1 to {MAX_CHAIN}"
        )
    try:
        return tuple(pem_to_der(p, f"evidence.chain[{i}]") for i, p in enumerate(value))
    except VerificationError as e:
        raise EvidenceFormatError(e.message) from e


def parse_evidence_document(obj: object, name: str) -> tuple[Evidence, AuthenticatorInfo | None]:
    """Read evidence from a parsed JSON document in any of the forms an authenticator's output
    is passed on: a bare evidence object (``{"type": …}``), an object holding the evidence alone
    (``{"evidence": {…}}``), or a whole ``mie auth --json`` result (its ``evidence`` and
    ``authenticator``).

    :param obj: the parsed JSON value (from :func:`mie.core.strictjson.loads`, so already bounded).
    :param name: what the document is, for messages (``"evidence file 'a.json'"``, ``"request
        body"``); shown as given.
    :return: the evidence, and the authenticator a whole result names (``None`` otherwise).
        Neither is verified yet: see :func:`mie.verify_evidence`.
    :raises EvidenceFormatError: another shape: not an object, an unknown ``type``, a missing or
        extra field, bad hex, or a result (or ``{"evidence": null}``) without evidence, as a
        failed authentication is.
    """
    from mie.result import AuthResult

    if isinstance(obj, dict) and "type" in obj:
        return Evidence.from_json(obj), None
    if isinstance(obj, dict) and obj.keys() == {"evidence"}:
        if obj["evidence"] is None:
            raise EvidenceFormatError(f"The {_bare(name)} holds no evidence (it is null)")
        return Evidence.from_json(obj["evidence"]), None
    if isinstance(obj, dict) and "evidence" in obj:
        result = AuthResult.from_json(obj)
        if result.evidence is None:
            raise EvidenceFormatError(f"The result in {name} holds no evidence (it failed)")
        return result.evidence, result.authenticator
    raise EvidenceFormatError(f"{name[:1].upper()}{name[1:]} holds neither evidence nor a result")


def _bare(name: str) -> str:
    # "the evidence file 'x'" reads better than "the  evidence file"; a name given with its own
    # article keeps it.
    return name[4:] if name.lower().startswith("the ") else name


def load_evidence_file(path: str | os.PathLike[str]) -> tuple[Evidence, AuthenticatorInfo | None]:
    """Read evidence saved by an authenticator: a bare evidence object, the evidence alone under
    ``"evidence"``, or a whole ``mie auth --json`` result (see :func:`parse_evidence_document`).

    :param path: the file (at most :data:`MAX_EVIDENCE_BYTES`).
    :return: the evidence, and the authenticator a saved result names (``None`` for bare
        evidence). Neither is verified yet: see :func:`mie.verify_evidence`.
    :raises JsonFormatError: the file cannot be read, or is not strict JSON (too large, not
        UTF-8, a duplicate key...).
    :raises EvidenceFormatError: JSON of another shape: an unknown ``type``, a missing or extra
        field, bad hex, or a saved result without evidence (a failed authentication).
    """
    # The path is the caller's, not the file's content: it is shown whole.
    name = f"evidence file {os.fspath(path)!r}"
    try:
        # Non-blocking open, then a regular file only: a FIFO with no writer never blocks.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise JsonFormatError(f"Cannot read {name} (not a regular file)")
            data = handle.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as e:
        raise JsonFormatError(f"Cannot read {name} ({e.strerror})") from e
    obj = strictjson.loads(data, name, max_bytes=MAX_EVIDENCE_BYTES)
    return parse_evidence_document(obj, name)


__all__ = [
    "CHALLENGE_BYTES",
    "MAX_CHAIN",
    "MAX_EVIDENCE_BYTES",
    "MAX_SIGNATURE_BYTES",
    "Evidence",
    "X509SignatureEvidence",
    "load_evidence_file",
    "parse_evidence_document",
]
