"""The credentials of the emulated security key, how they sign, and its state file.

A :class:`StoredCredential` keeps its private key in clear: this is an emulator, never a real
key. No repr shows a key.

The state file (``mie-fido-state/1``, JSON, mode 0600, written atomically) keeps what a key
keeps across power-downs: AAGUID, counter mode and global counter, the BE setting, the PIN hash
and retries, every credential with its private key (PKCS#8 DER in hex) and counter. It is read
strictly (:func:`decode_state`): every field present and nothing else, each one bounded; any
other document is a :class:`~mie.core.errors.JsonFormatError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mie.core import strictjson
from mie.core.errors import JsonFormatError
from mie.core.files import NotARegularInputError, atomic_write, read_regular_file
from mie.core.strictjson import FieldChecks, Number

ES256 = -7
EDDSA = -8
ALGORITHMS = (ES256, EDDSA)
"""The COSE algorithms the emulator can create credentials for, by preference."""

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def generate_key(alg: int) -> PrivateKey:
    """:return: a new private key for COSE algorithm ``alg`` (ES256 or EdDSA)."""
    if alg == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"COSE algorithm {alg} is not one the emulator makes")


def cose_public_key(key: PrivateKey) -> dict[int, Any]:
    """:return: the COSE_Key map of ``key``'s public half (ES256 EC2 P-256, or EdDSA OKP)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            1: 2,
            3: ES256,
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    raw = key.public_key().public_bytes_raw()
    return {1: 1, 3: EDDSA, -1: 6, -2: raw}


def sign(key: PrivateKey, data: bytes) -> bytes:
    """:return: the WebAuthn signature of ``data``: DER ECDSA with SHA-256, or Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


@dataclass
class StoredCredential:
    """One credential on the key.

    :param id: the credential id (random).
    :param rp_id: the relying party id it was made for.
    :param rp_id_hash: SHA-256 of ``rp_id``.
    :param user: the user entity given at creation (``id``, ``name``, ``displayName``).
    :param alg: its COSE algorithm.
    :param private_key: its private key (never in a repr).
    :param sign_count: the per-credential signature counter.
    :param discoverable: a resident (discoverable) credential.
    :param created: the key's creation sequence number (newest first in discovery).
    """

    id: bytes
    rp_id: str
    rp_id_hash: bytes
    user: dict[str, Any]
    alg: int
    private_key: PrivateKey = field(repr=False)
    sign_count: int = 0
    discoverable: bool = False
    created: int = 0

    @property
    def cose_key(self) -> dict[int, Any]:
        """:return: the credential public key as a COSE_Key map."""
        return cose_public_key(self.private_key)

    def sign(self, data: bytes) -> bytes:
        """:return: the signature of ``data`` with the credential key."""
        return sign(self.private_key, data)


# --- the state file (mie-fido-state/1) -----------------------------------------------------

STATE_FORMAT = "mie-fido-state/1"
MAX_CREDENTIALS = 512
"""Credentials a key holds, discoverable or not (the emulator keeps every private key)."""
MAX_DISCOVERABLE = 25
MAX_STATE_BYTES = 4 * 1024 * 1024
"""512 credentials of the longest fields, every character escaped, with room to spare."""
MAX_RP_ID_BYTES = 255
MAX_USER_ID = 64
MAX_USER_STRING = 64
MAX_COUNTER = 0xFFFFFFFF
PIN_RETRIES = 8
COUNTER_MODES = ("per-credential", "global", "zero")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_UINT = re.compile(r"0|[1-9][0-9]{0,9}")
_TOP_FIELDS = {"format", "aaguid", "backup_eligible", "pin", "counter", "credentials"}
_CREDENTIAL_FIELDS = {"id", "rp_id", "user", "alg", "private_key", "sign_count", "discoverable"}


@dataclass
class KeyState:
    """What an emulated key keeps across power-downs (the state file's content).

    :param aaguid: the key's AAGUID.
    :param counter_mode: ``per-credential``, ``global`` or ``zero``.
    :param global_counter: the global signature counter.
    :param backup_eligible: whether its credentials carry the BE flag.
    :param pin_hash: LEFT(SHA-256(PIN), 16), ``None`` without a PIN (never in a repr).
    :param pin_retries: wrong PINs left.
    :param credentials: its credentials, oldest first.
    """

    aaguid: bytes
    counter_mode: str
    global_counter: int = 0
    backup_eligible: bool = False
    pin_hash: bytes | None = field(default=None, repr=False)
    pin_retries: int = PIN_RETRIES
    credentials: list[StoredCredential] = field(default_factory=list)


def private_key_der(key: PrivateKey) -> bytes:
    """:return: ``key`` as unencrypted PKCS#8 DER."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def encode_state(state: KeyState) -> bytes:
    """:return: ``state`` as a ``mie-fido-state/1`` JSON document (private keys in clear: an
    emulator's file, written mode 0600 by :func:`save_state`)."""
    pin = (
        None
        if state.pin_hash is None
        else {"hash": state.pin_hash.hex(), "retries": state.pin_retries}
    )
    credentials = [
        {
            "id": c.id.hex(),
            "rp_id": c.rp_id,
            "user": {
                "id": c.user["id"].hex(),
                "name": c.user.get("name", ""),
                "display_name": c.user.get("displayName", ""),
            },
            "alg": c.alg,
            "private_key": private_key_der(c.private_key).hex(),
            "sign_count": c.sign_count,
            "discoverable": c.discoverable,
        }
        for c in state.credentials
    ]
    document = {
        "format": STATE_FORMAT,
        "aaguid": state.aaguid.hex(),
        "backup_eligible": state.backup_eligible,
        "pin": pin,
        "counter": {"mode": state.counter_mode, "global": state.global_counter},
        "credentials": credentials,
    }
    return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


class _Reader(FieldChecks):
    """Field checks for one document; every failure names the field."""

    def hex(self, value: Any, where: str, sizes: range) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) // 2 not in sizes:
            raise self.fail(
                f"{where} is not lower-case hex of {sizes.start}..{sizes.stop - 1} bytes"
            )
        return bytes.fromhex(value)

    def uint(self, value: Any, where: str, most: int) -> int:
        if (
            not isinstance(value, Number)
            or not _UINT.fullmatch(value.text)
            or int(value.text) > most
        ):
            raise self.fail(f"{where} is not an integer 0..{most}")
        return int(value.text)

    def text(self, value: Any, where: str, most: int, *, empty: bool) -> str:
        if not isinstance(value, str) or len(value.encode("utf-8")) > most or not (empty or value):
            least = 0 if empty else 1
            raise self.fail(f"{where} is not a string of {least}..{most} UTF-8 bytes")
        return value

    def credential(self, value: Any, where: str) -> StoredCredential:
        obj = self.object(value, where, _CREDENTIAL_FIELDS)
        rp_id = self.text(obj["rp_id"], f"{where}.rp_id", MAX_RP_ID_BYTES, empty=False)
        user_obj = self.object(obj["user"], f"{where}.user", {"id", "name", "display_name"})
        user: dict[str, Any] = {"id": self.hex(user_obj["id"], f"{where}.user.id", range(1, 65))}
        for key, name in (("name", "name"), ("display_name", "displayName")):
            text = self.text(user_obj[key], f"{where}.user.{key}", MAX_USER_STRING, empty=True)
            if text:
                user[name] = text
        alg = obj["alg"]
        if not isinstance(alg, Number) or alg.text not in ("-7", "-8"):
            raise self.fail(f"{where}.alg is not -7 (ES256) or -8 (EdDSA)")
        return StoredCredential(
            id=self.hex(obj["id"], f"{where}.id", range(16, 129)),
            rp_id=rp_id,
            rp_id_hash=hashlib.sha256(rp_id.encode("utf-8")).digest(),
            user=user,
            alg=int(alg.text),
            private_key=self.private_key(obj["private_key"], f"{where}.private_key", int(alg.text)),
            sign_count=self.uint(obj["sign_count"], f"{where}.sign_count", MAX_COUNTER),
            discoverable=self.flag(obj["discoverable"], f"{where}.discoverable"),
        )

    def private_key(self, value: Any, where: str, alg: int) -> PrivateKey:
        der = self.hex(value, where, range(1, 257))
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise self.fail(f"{where} is not a PKCS#8 private key") from e
        if alg == ES256 and isinstance(key, ec.EllipticCurvePrivateKey):
            if isinstance(key.curve, ec.SECP256R1):
                return key
        elif alg == EDDSA and isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        raise self.fail(f"{where} is not a key of algorithm {alg}")


def decode_state(data: bytes, name: str = "FIDO key state") -> KeyState:
    """Read a ``mie-fido-state/1`` document strictly: every field present, nothing else,
    lengths, ranges and private keys checked, credential ids unique, at most 25 discoverable
    credentials and one per relying party and user.

    :param data: the document.
    :param name: what messages call it (a file name).
    :return: the state.
    :raises JsonFormatError: on anything else, naming the field.
    """
    r = _Reader(name)
    top = r.object(strictjson.loads(data, name, max_bytes=MAX_STATE_BYTES), "document", _TOP_FIELDS)
    if top["format"] != STATE_FORMAT:
        raise r.fail(f"the format is not {STATE_FORMAT!r}")
    counter = r.object(top["counter"], "counter", {"mode", "global"})
    if counter["mode"] not in COUNTER_MODES:
        raise r.fail(f"counter.mode is not one of {', '.join(COUNTER_MODES)}")
    state = KeyState(
        aaguid=r.hex(top["aaguid"], "aaguid", range(16, 17)),
        counter_mode=counter["mode"],
        global_counter=r.uint(counter["global"], "counter.global", MAX_COUNTER),
        backup_eligible=r.flag(top["backup_eligible"], "backup_eligible"),
    )
    if top["pin"] is not None:
        pin = r.object(top["pin"], "pin", {"hash", "retries"})
        state.pin_hash = r.hex(pin["hash"], "pin.hash", range(16, 17))
        state.pin_retries = r.uint(pin["retries"], "pin.retries", PIN_RETRIES)
    items = top["credentials"]
    if not isinstance(items, list) or len(items) > MAX_CREDENTIALS:
        raise r.fail(f"credentials is not a list of at most {MAX_CREDENTIALS} items")
    ids: set[bytes] = set()
    residents: set[tuple[str, bytes]] = set()
    for i, item in enumerate(items):
        credential = r.credential(item, f"credentials[{i}]")
        if credential.id in ids:
            raise r.fail(f"credentials[{i}].id is repeated")
        ids.add(credential.id)
        if credential.discoverable:
            owner = (credential.rp_id, credential.user["id"])
            if owner in residents or len(residents) >= MAX_DISCOVERABLE:
                raise r.fail(
                    f"credentials[{i}] is a second discoverable credential for its relying party"
                    f" and user, or more than {MAX_DISCOVERABLE}"
                )
            residents.add(owner)
        credential.created = i + 1
        state.credentials.append(credential)
    return state


def save_state(path: str | os.PathLike[str], data: bytes) -> None:
    """Write an encoded state to ``path`` atomically, mode 0600 (it holds keys in clear).

    :raises OSError: the file cannot be written (the old file is left whole).
    """
    atomic_write(path, data, mode=0o600)


def load_state(path: str | os.PathLike[str]) -> tuple[KeyState, bytes]:
    """Read the state file at ``path``; a FIFO or device never blocks, a directory is refused.

    :return: the state and the bytes read.
    :raises JsonFormatError: not a regular file, unreadable, or not a valid state document.
    """
    name = f"FIDO key state {os.fspath(path)!r}"
    try:
        data = read_regular_file(path, MAX_STATE_BYTES)
    except NotARegularInputError as e:
        raise JsonFormatError(f"Cannot read {name} (not a regular file)") from e
    except OSError as e:
        raise JsonFormatError(f"Cannot read {name} ({e.strerror})") from e
    return decode_state(data, name), data
