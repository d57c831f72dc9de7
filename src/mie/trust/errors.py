"""The verification error of :mod:`mie.trust` and its contract codes.

Both live in :mod:`mie.core.errors` (one enum for every contract code); these are the same
objects, kept here for the callers of :mod:`mie.trust`.
"""

from __future__ import annotations

from mie.core.errors import ErrorCode, VerificationError, one_line

__all__ = ["ErrorCode", "VerificationError", "describe", "malformed", "one_line"]


def malformed(message: str) -> VerificationError:
    """:return: a ``malformed`` error with ``message``."""
    return VerificationError(ErrorCode.MALFORMED, message)


_MAX_DETAIL = 300


def describe(error: BaseException) -> str:
    """A short one-line description of a library's exception, for a message.

    asn1crypto appends ``while parsing …`` lines and cryptography can quote whole parse trees:
    only the first line is kept, cut to a few hundred characters.

    :return: the first line of ``str(error)``, or the exception's class name when empty.
    """
    lines = str(error).strip().splitlines()
    first = one_line(lines[0]) if lines else ""
    if len(first) > _MAX_DETAIL:
        first = first[: _MAX_DETAIL - 3] + "..."
    return first or type(error).__name__
