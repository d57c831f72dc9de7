"""Luhn mod 10, the check digit of RPPS, SIREN, SIRET and (assumed) FINESS numbers."""

from __future__ import annotations


def luhn_valid(digits: str) -> bool:
    """Whether a string of decimal digits passes Luhn mod 10 (its last digit is the check digit).

    :param digits: the number, check digit last.
    :return: ``True`` when the checksum is 0 mod 10; ``False`` for any non-digit input.
    """
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    return _luhn_sum(digits) % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to ``payload``.

    :param payload: decimal digits without their check digit.
    :return: one decimal digit.
    """
    if not payload or not (payload.isascii() and payload.isdigit()):
        raise ValueError("Luhn payload must be decimal digits")
    return str((10 - _luhn_sum(payload + "0")) % 10)


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total
