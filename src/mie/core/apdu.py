"""Command and response APDUs (ISO/IEC 7816-3 §12.1, 7816-4 §5.1), short and extended.

``le`` is the number of bytes expected (Ne), 1 to 65536, or ``None`` when absent: the short encoding
``00`` means 256 and the extended encoding ``0000`` means 65536.
"""

from __future__ import annotations

from dataclasses import dataclass

from mie.core.errors import ApduFormatError

SHORT_MAX_DATA = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_DATA = 65535
EXTENDED_MAX_LE = 65536


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ApduFormatError(f"{name} must be a byte, got {value}")


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU.

    :param cla: class byte.
    :param ins: instruction byte.
    :param p1: parameter 1.
    :param p2: parameter 2.
    :param data: command data (Nc = its length).
    :param le: expected response length (Ne), or ``None`` for none.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name.upper(), getattr(self, name))
        if len(self.data) > EXTENDED_MAX_DATA:
            raise ApduFormatError(f"Command data of {len(self.data)} bytes exceeds 65535")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise ApduFormatError(f"Le must be 1..65536 or absent, got {self.le}")

    @property
    def needs_extended(self) -> bool:
        """:return: whether the command only fits in the extended-length encoding."""
        return len(self.data) > SHORT_MAX_DATA or (self.le or 0) > SHORT_MAX_LE

    def encode(self, extended: bool | None = None) -> bytes:
        """Encode the command.

        :param extended: force (``True``) or forbid (``False``) the extended encoding; ``None``
            picks short unless the fields need extended.
        :return: the APDU bytes.
        """
        if extended is None:
            extended = self.needs_extended
        elif not extended and self.needs_extended:
            raise ApduFormatError("Command needs extended length but short encoding was requested")
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        if extended:
            return header + self._extended_body()
        return header + self._short_body()

    def _short_body(self) -> bytes:
        body = bytes([len(self.data)]) + self.data if self.data else b""
        if self.le is not None:
            body += bytes([self.le & 0xFF])
        return body

    def _extended_body(self) -> bytes:
        if not self.data and self.le is None:
            return b""
        body = b"\x00"
        if self.data:
            body += len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            body += (self.le & 0xFFFF).to_bytes(2, "big")
        return body

    def __bytes__(self) -> bytes:
        return self.encode()

    def with_le(self, le: int | None) -> CommandApdu:
        """:return: the same command with another Le."""
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, self.data, le)

    @classmethod
    def parse(cls, apdu: bytes) -> CommandApdu:
        """Decode a command APDU in any of the seven ISO 7816-3 cases.

        :param apdu: the APDU bytes.
        :return: the command.
        """
        if len(apdu) < 4:
            raise ApduFormatError(f"Command APDU of {len(apdu)} bytes is shorter than its header")
        cla, ins, p1, p2 = apdu[:4]
        body = bytes(apdu[4:])
        data, le = _parse_body(body)
        return cls(cla, ins, p1, p2, data, le)


def _parse_body(body: bytes) -> tuple[bytes, int | None]:
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0] or SHORT_MAX_LE
    if body[0] != 0:
        return _parse_short_body(body)
    return _parse_extended_body(body)


def _parse_short_body(body: bytes) -> tuple[bytes, int | None]:
    lc = body[0]
    if len(body) == 1 + lc:
        return body[1:], None
    if len(body) == 2 + lc:
        return body[1:-1], body[-1] or SHORT_MAX_LE
    raise ApduFormatError(f"Lc={lc} does not match the {len(body) - 1} bytes that follow it")


def _parse_extended_body(body: bytes) -> tuple[bytes, int | None]:
    if len(body) < 3:
        raise ApduFormatError(f"Extended-length body of {len(body)} bytes is truncated")
    value = int.from_bytes(body[1:3], "big")
    if len(body) == 3:
        return b"", value or EXTENDED_MAX_LE
    if value == 0:
        raise ApduFormatError("Extended Lc of zero")
    if len(body) == 3 + value:
        return body[3:], None
    if len(body) == 5 + value:
        return body[3:-2], int.from_bytes(body[-2:], "big") or EXTENDED_MAX_LE
    raise ApduFormatError(f"Extended Lc={value} does not match the {len(body) - 3} bytes after it")


def split_response(response: bytes) -> tuple[bytes, int]:
    """Split a response APDU into its data and status word.

    :param response: the response bytes (data followed by SW1 SW2).
    :return: ``(data, sw)``.
    """
    if len(response) < 2:
        raise ApduFormatError(f"Response APDU of {len(response)} bytes has no status word")
    return bytes(response[:-2]), int.from_bytes(response[-2:], "big")
