"""Traffic logging below DEBUG, with PIN fields masked.

Raw APDUs are logged only at :data:`TRAFFIC` (5). DEBUG and INFO lines describe operations and
never carry values. The data field of every command that can carry a PIN (VERIFY, CHANGE
REFERENCE DATA, RESET RETRY COUNTER) is replaced by ``*`` characters wherever commands are
written out: logs, emulator traces and recorded vectors all use :func:`redact_command`.
"""

from __future__ import annotations

import logging

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

TRAFFIC_WARNING = (
    "WARNING: traffic logging is on. Raw APDUs are written to the log; PIN fields are masked, "
    "but card data (names, identifiers, certificates) is visible. Do not use it in production."
)

PIN_CARRYING_INS = frozenset({0x20, 0x21, 0x24, 0x2C})
MASK_CHAR = "*"


def _data_offset(apdu: bytes) -> int | None:
    """:return: where the command data starts, or ``None`` when there is none."""
    if len(apdu) <= 5:
        return None
    if apdu[4] != 0:
        return 5
    return 7 if len(apdu) > 7 else None


def redact_command(apdu: bytes) -> str:
    """Hex of a command APDU with any PIN-carrying data field replaced by ``*``.

    The mask keeps the length (two ``*`` per byte) so a replay can still check it. When the
    command cannot be delimited, everything after the header is masked: the mask fails safe.

    :param apdu: the encoded command.
    :return: lowercase hex, masked where needed.
    """
    if len(apdu) < 4 or apdu[1] not in PIN_CARRYING_INS:
        return apdu.hex()
    start = _data_offset(apdu)
    if start is None:
        return apdu.hex()
    lc = apdu[4] if start == 5 else int.from_bytes(apdu[5:7], "big")
    end = start + lc if start + lc <= len(apdu) else len(apdu)
    return apdu[:start].hex() + MASK_CHAR * (2 * (end - start)) + apdu[end:].hex()


def log_command(logger: logging.Logger, apdu: bytes) -> None:
    """Log a command at TRAFFIC level, masked."""
    if logger.isEnabledFor(TRAFFIC):
        logger.log(TRAFFIC, "SEND: %s", redact_command(apdu))


def log_response(logger: logging.Logger, data: bytes, sw: int) -> None:
    """Log a response at TRAFFIC level."""
    if logger.isEnabledFor(TRAFFIC):
        logger.log(TRAFFIC, "RECV: %s %04X", data.hex(), sw)
