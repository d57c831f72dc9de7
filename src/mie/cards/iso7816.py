"""A session for ISO/IEC 7816-4 file-system cards: select, read files, PIN status and VERIFY.

Card-specific sessions (CPx) build on it. PIN handling follows the rules every :mod:`mie` session
keeps: the retry counter is read before a PIN is presented, the last try is spent only when the
caller allows it, the PIN is never retried, logged or kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mie.core.apdu import CommandApdu
from mie.core.atr import Atr
from mie.core.connection import SmartCardConnection
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    BadResponseError,
    InvalidPinError,
    LastTryRefusedError,
    PinBlockedError,
    SecurityStatusError,
    TlvError,
)
from mie.core.processors import SmartCardProtocol
from mie.core.sw import SW
from mie.core.tlv import Tlv, tlv_dict

logger = logging.getLogger(__name__)

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
TAG_FCP = 0x62
TAG_FCI = 0x6F
TAG_FILE_SIZE = 0x80
MAX_FILE_SIZE = 0x7FFF
READ_CHUNK = 256


@dataclass(frozen=True)
class PinStatus:
    """What the card says of a PIN, read without spending a try.

    :param verified: whether the PIN is already verified in this card session.
    :param tries_left: tries before the PIN blocks (``None`` when verified: cards do not say).
    :param sw: the status word the card answered (kept as the cause of a PIN refusal).
    """

    verified: bool
    tries_left: int | None
    sw: int | None = field(default=None, compare=False)

    @property
    def blocked(self) -> bool:
        """:return: whether no try remains."""
        return self.tries_left == 0


def retries_from_sw(sw: int) -> int | None:
    """:return: the PIN tries a VERIFY status word reports (``63Cx``: x, ``6983``: 0), or None."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    if sw == SW.AUTH_METHOD_BLOCKED:
        return 0
    return None


def raise_pin_error(e: ApduError) -> None:
    """Translate a VERIFY status word into the PIN errors (``e`` as their cause); re-raise
    anything else unchanged.

    :raises InvalidPinError: ``63Cx``.
    :raises PinBlockedError: ``6983``.
    """
    tries = retries_from_sw(e.sw)
    if tries == 0:
        raise PinBlockedError() from e
    if tries is not None:
        raise InvalidPinError(tries) from e
    if e.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
        raise SecurityStatusError(e.data, e.sw, "Security status not satisfied") from e
    raise e


def file_size_from_fcp(fcp: bytes) -> int:
    """Read the file size (tag ``80``) from a SELECT answer (FCP ``62`` or FCI ``6F``).

    :param fcp: the SELECT response data.
    :return: the file size in bytes.
    :raises BadResponseError: the answer is not a well-formed template with a size.
    """
    try:
        template = Tlv.parse(fcp)
        if template.tag not in (TAG_FCP, TAG_FCI):
            raise BadResponseError(f"SELECT answered tag {template.tag:X}, not an FCP/FCI")
        size = tlv_dict(template.value).get(TAG_FILE_SIZE)
    except TlvError as e:
        raise BadResponseError(f"Malformed FCP: {e}") from e
    if size is None or not 1 <= len(size) <= 2:
        raise BadResponseError("FCP has no valid file size (tag 80)")
    return int.from_bytes(size, "big")


class Iso7816Session:
    """Commands common to ISO 7816-4 file-system cards.

    :param connection: the card connection.
    :param aid: the application to select; ``None`` leaves the card as it is.
    """

    def __init__(self, connection: SmartCardConnection, aid: bytes | None = None) -> None:
        self.connection = connection
        self.protocol = SmartCardProtocol(connection, t0=_t0_only(connection.atr))
        self.read_chunk = READ_CHUNK
        self.fci = self.protocol.select(aid) if aid is not None else None

    def select_file(self, fid: int) -> int:
        """SELECT an EF under the current DF by FID and return its size.

        :param fid: the file identifier.
        :return: the file size from the FCP.
        """
        logger.debug("Selecting file %04X", fid)
        fcp = self.protocol.send_apdu(0x00, INS_SELECT, 0x02, 0x04, fid.to_bytes(2, "big"), 256)
        return file_size_from_fcp(fcp)

    def read_file(self, fid: int) -> bytes:
        """Read a whole transparent EF: SELECT for its size, then READ BINARY in chunks.

        :param fid: the file identifier.
        :return: the file content.
        """
        size = self.select_file(fid)
        if size > MAX_FILE_SIZE:
            raise BadResponseError(f"File {fid:04X} claims {size} bytes, more than 32767")
        chunks = []
        offset = 0
        while offset < size:
            want = min(self.read_chunk, size - offset)
            chunk = self.protocol.send_apdu(
                0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=want
            )
            if len(chunk) != want:
                raise BadResponseError(
                    f"READ BINARY at {offset} returned {len(chunk)} bytes, expected {want}"
                )
            chunks.append(chunk)
            offset += want
        logger.info("Read file %04X (%d bytes)", fid, size)
        return b"".join(chunks)

    def read_sfi(self, sfi: int) -> bytes:
        """Read a whole transparent EF by short file identifier, without knowing its size.

        The card answers a short chunk (``6Cxx`` under T=0, ``6282`` under T=1) at the end.

        :param sfi: the short file identifier, 1 to 30.
        :return: the file content.
        """
        if not 1 <= sfi <= 30:
            raise ValueError(f"SFI must be 1..30, got {sfi}")
        chunks: list[bytes] = []
        offset = 0
        while offset <= MAX_FILE_SIZE:
            p1, p2 = (0x80 | sfi, offset) if offset < 256 else (offset >> 8, offset & 0xFF)
            data, sw = self.protocol.transmit(
                CommandApdu(0x00, INS_READ_BINARY, p1, p2, le=self.read_chunk)
            )
            if sw not in (SW.OK, SW.END_OF_FILE):
                if sw == SW.WRONG_P1P2 and offset:
                    break
                raise ApduError(data, sw)
            chunks.append(data)
            offset += len(data)
            if sw == SW.END_OF_FILE or len(data) < self.read_chunk:
                break
        logger.info("Read SFI %d (%d bytes)", sfi, offset)
        return b"".join(chunks)

    def pin_status(self, pin_ref: int = 0x01, cla: int = 0x00) -> PinStatus:
        """Read the PIN status with an empty VERIFY, which spends no try.

        :param pin_ref: the PIN reference (VERIFY P2).
        :param cla: class byte (logical channel).
        :return: the status.
        """
        _, sw = self.protocol.transmit(CommandApdu(cla, INS_VERIFY, 0x00, pin_ref))
        if sw == SW.OK:
            return PinStatus(True, None, sw)
        tries = retries_from_sw(sw)
        if tries is None:
            raise ApduError(b"", sw)
        return PinStatus(False, tries, sw)

    def check_pin_tries(
        self, pin_ref: int = 0x01, allow_last_try: bool = False, cla: int = 0x00
    ) -> int | None:
        """Read the retry counter before a PIN is presented, and refuse what must not be tried.

        A PIN verified earlier in this card session is presented again all the same (each
        authentication must prove knowledge of the PIN), so a verified status is no refusal.

        :param pin_ref: the PIN reference (VERIFY P2).
        :param allow_last_try: accept presenting the PIN when only one try is left.
        :param cla: class byte (logical channel).
        :return: the tries left (``None``: the PIN is verified, the card does not say).
        :raises PinBlockedError: the PIN is blocked.
        :raises LastTryRefusedError: one try left and ``allow_last_try`` is false.
        """
        status = self.pin_status(pin_ref, cla)
        # The status word the card gave (63C0 or 6983, 63C1) stays the cause of the refusal.
        answer = ApduError(b"", status.sw if status.sw is not None else SW.AUTH_METHOD_BLOCKED)
        if status.blocked:
            raise PinBlockedError() from answer
        if status.tries_left == 1 and not allow_last_try:
            raise LastTryRefusedError() from answer
        return status.tries_left

    def present_pin(
        self, pin_block: bytes | bytearray, pin_ref: int = 0x01, cla: int = 0x00
    ) -> None:
        """Present a PIN once (VERIFY with data); the caller checked the counter first.

        The caller's ``pin_block`` is wiped (zeroed in place) when it is a ``bytearray``.

        :param pin_block: the PIN exactly as the card expects it (formatted and padded).
        :param pin_ref: the PIN reference (VERIFY P2).
        :param cla: class byte (logical channel).
        :raises InvalidPinError: the card rejected the PIN.
        :raises PinBlockedError: the card rejected the PIN and no try remains.
        """
        try:
            logger.debug("Verifying PIN")
            try:
                self.protocol.send_apdu(cla, INS_VERIFY, 0x00, pin_ref, bytes(pin_block))
            except ApduError as e:
                raise_pin_error(e)
            logger.info("PIN verified")
        finally:
            if isinstance(pin_block, bytearray):
                pin_block[:] = bytes(len(pin_block))

    def verify_pin(
        self,
        pin_block: bytes | bytearray,
        pin_ref: int = 0x01,
        allow_last_try: bool = False,
        cla: int = 0x00,
    ) -> None:
        """Present a PIN once, after checking the retry counter (:meth:`check_pin_tries`, then
        :meth:`present_pin`).

        The caller's ``pin_block`` is wiped (zeroed in place) when it is a ``bytearray``.

        :param pin_block: the PIN exactly as the card expects it (formatted and padded).
        :param pin_ref: the PIN reference (VERIFY P2).
        :param allow_last_try: present the PIN even if only one try is left.
        :param cla: class byte (logical channel).
        :raises LastTryRefusedError: one try left and ``allow_last_try`` is false; nothing sent.
        :raises PinBlockedError: the PIN is blocked; nothing sent.
        :raises InvalidPinError: the card rejected the PIN.
        """
        try:
            self.check_pin_tries(pin_ref, allow_last_try, cla)
        except BaseException:
            if isinstance(pin_block, bytearray):
                pin_block[:] = bytes(len(pin_block))
            raise
        self.present_pin(pin_block, pin_ref, cla)


def _t0_only(atr: bytes | None) -> bool:
    if not atr:
        return False
    try:
        return Atr.parse(atr).t0_only
    except ApduFormatError:
        return False
