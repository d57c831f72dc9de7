"""Status words: names for the ones :mod:`mie` acts on, and a description for any value."""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class SW(IntEnum):
    """Status words with a meaning in ISO/IEC 7816-4 that :mod:`mie` acts on.

    :meth:`SW.of` maps any value to a member, falling back to :attr:`UNKNOWN`, so callers can always
    read ``.name``.
    """

    UNKNOWN = 0x0000
    OK = 0x9000
    END_OF_FILE = 0x6282
    VERIFY_FAILED = 0x6300
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_INCOMPATIBLE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    INCORRECT_SM_DATA_OBJECTS = 0x6988
    INVALID_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2_TLV = 0x6A85
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00

    @classmethod
    def of(cls, sw: int) -> SW:
        """Return the member for ``sw``, or :attr:`UNKNOWN`.

        :param sw: a status word as one int.
        :return: the named status word.
        """
        try:
            return cls(sw)
        except ValueError:
            return cls.UNKNOWN


def describe_sw(sw: int) -> str:
    """Describe a status word for messages, including the ranges that carry a number.

    :param sw: a status word as one int.
    :return: a short English description.
    """
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} response bytes available"
    if sw1 == 0x6C:
        return f"wrong Le, {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    name = SW.of(sw).name
    return name.lower().replace("_", " ")
