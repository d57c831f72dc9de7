"""The PIN format mechanism: a rule checked before anything is sent to an authenticator.

The values belong to each authenticator (CPx cards: 4 to 8 digits, ``mie.cards.cpx.CPX_PIN``;
FIDO2 keys will take 4 to 63 characters), not to :mod:`mie.core`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mie.core.errors import PinFormatError


@dataclass(frozen=True)
class PinRule:
    """What a PIN must look like for one kind of authenticator.

    :param min_length: fewest characters.
    :param max_length: most characters.
    :param digits_only: only ASCII decimal digits.
    """

    min_length: int
    max_length: int
    digits_only: bool

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"PIN lengths {self.min_length} to {self.max_length} are not a range")

    def check(self, pin: str | bytes | bytearray) -> None:
        """Check ``pin``, without echoing it (or any of its characters) in the error.

        :param pin: the PIN as typed (a ``bytearray`` is read in place, never copied).
        :raises PinFormatError: wrong length, or a character the rule does not allow.
        """
        # A str is checked as text: encoding a non-ASCII PIN could name its characters.
        if not self.min_length <= len(pin) <= self.max_length:
            # The length typed is not named: it narrows the PIN and error lines get logged.
            raise PinFormatError(
                f"PIN must have {self.min_length} to {self.max_length} {self._unit}"
            )
        if not self.digits_only:
            return
        digits = (
            pin.isascii() and pin.isdigit()
            if isinstance(pin, str)
            else all(0x30 <= b <= 0x39 for b in pin)
        )
        if not digits:
            raise PinFormatError("PIN must contain decimal digits only")

    def pad(self, pin: str | bytes | bytearray, length: int = 8, pad: int = 0xFF) -> bytearray:
        """Check ``pin`` and encode it as a PIN block: ASCII (UTF-8 for a non-digit rule), padded.

        :param pin: the PIN.
        :param length: the PIN block length the authenticator expects.
        :param pad: the padding byte.
        :return: a ``bytearray`` the caller can wipe after use.
        :raises PinFormatError: the rule refuses the PIN, or it does not fit in ``length`` bytes.
        """
        self.check(pin)
        block = bytearray(pin.encode("utf-8") if isinstance(pin, str) else pin)
        if len(block) > length:
            block[:] = bytes(len(block))
            raise PinFormatError(f"PIN has more bytes than the {length}-byte PIN block holds")
        block.extend([pad] * (length - len(block)))
        return block

    @property
    def _unit(self) -> str:
        return "digits" if self.digits_only else "characters"
