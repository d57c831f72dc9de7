"""Errors of the relay between the IAM and ``mie agent`` (issue 9 plan, D8).

A refusal by the agent (a command outside the allow-list, a card that is not a DESFire badge, a
hello for another session or origin) is :class:`RelayRefusedError`; a peer that went away is
:class:`RelayClosedError`, one that stopped answering :class:`RelayTimeoutError`; a message that
breaks the wire format is :class:`RelayProtocolError`.
"""

from __future__ import annotations

from mie.core.errors import ErrorCode, MieError, TransportError, TransportTimeoutError


class RelayRefusedError(MieError):
    """The relay refused: the agent would not forward a command or speak to the card, or a peer
    would not take the session (unknown, used, expired, or for another origin).

    :param reason: what was refused, one line.
    """

    code = ErrorCode.RELAY_REFUSED

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Relay refused: {reason}")


class RelayClosedError(TransportError):
    """The relay peer closed the connection, or it broke, before the session ended."""


class RelayTimeoutError(TransportTimeoutError):
    """The relay peer did not answer in the time allowed."""


class RelayProtocolError(MieError):
    """A relay message that breaks the wire format (not JSON text, an unknown type, a missing or
    extra field, a bad value, a sequence number out of order, too large)."""

    code = ErrorCode.MALFORMED
