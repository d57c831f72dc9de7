"""Traffic logging below DEBUG, with PIN fields masked.

Raw APDUs are logged only at :data:`TRAFFIC` (5). DEBUG and INFO lines describe operations and
never carry values. The data field of every command that can carry a PIN (VERIFY, CHANGE
REFERENCE DATA, RESET RETRY COUNTER) is replaced by ``*`` characters wherever commands are
written out: logs, emulator traces and recorded vectors all use :func:`redact_command`.
"""

from __future__ import annotations

import logging

from mie.core.apdu import CommandApdu
from mie.core.errors import ApduFormatError

TRAFFIC = 5
logging.addLevelName(TRAFFIC, "TRAFFIC")

TRAFFIC_WARNING = (
    "WARNING: traffic logging is on. Raw APDUs are written to the log; PIN fields are masked, "
    "but card data (names, identifiers, certificates) is visible. Do not use it in production."
)

# VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, DISABLE and ENABLE VERIFICATION REQUIREMENT.
PIN_CARRYING_INS = frozenset({0x20, 0x21, 0x24, 0x26, 0x28, 0x2C})
MASK_CHAR = "*"


def redact_command(apdu: bytes) -> str:
    """Hex of a command APDU with any PIN-carrying data field replaced by ``*``.

    The mask keeps the length (two ``*`` per byte) so a replay can still check it. When the
    command cannot be delimited, everything after the header is masked: the mask fails safe.

    :param apdu: the encoded command.
    :return: lowercase hex, masked where needed.
    """
    if len(apdu) < 4 or apdu[1] not in PIN_CARRYING_INS:
        return apdu.hex()
    try:
        command = CommandApdu.parse(apdu)
    except ApduFormatError:
        # A wrong or missing Lc would otherwise leave PIN bytes in clear (or show one as Lc).
        return apdu[:4].hex() + MASK_CHAR * (2 * (len(apdu) - 4))
    if not command.data:
        return apdu.hex()
    start = 5 if apdu[4] != 0 else 7
    end = start + len(command.data)
    return apdu[:start].hex() + MASK_CHAR * (2 * (end - start)) + apdu[end:].hex()


def log_command(logger: logging.Logger, apdu: bytes) -> None:
    """Log a command at TRAFFIC level, masked."""
    if logger.isEnabledFor(TRAFFIC):
        logger.log(TRAFFIC, "SEND: %s", redact_command(apdu))


def log_response(logger: logging.Logger, data: bytes, sw: int) -> None:
    """Log a response at TRAFFIC level."""
    if logger.isEnabledFor(TRAFFIC):
        logger.log(TRAFFIC, "RECV: %s %04X", data.hex(), sw)
