"""The verification error of :mod:`mie.trust` and its contract codes."""

from __future__ import annotations

import re
from enum import Enum, unique

from mie.core.errors import MieError


@unique
class ErrorCode(Enum):
    """Why a certificate check failed (the CLI/JSON contract codes)."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    UNTRUSTED = "untrusted"
    BAD_SIGNATURE = "bad_signature"
    NAME_CHAINING = "name_chaining"
    NOT_CA = "not_ca"
    PATH_LENGTH = "path_length"
    KEY_USAGE = "key_usage"
    POLICY = "policy"
    UNKNOWN_CRITICAL_EXTENSION = "unknown_critical_extension"
    REVOCATION_UNKNOWN = "revocation_unknown"
    MALFORMED = "malformed"


class VerificationError(MieError):
    """A certificate, chain, CRL or OCSP answer failed a check.

    ``code`` is one of the contract codes; ``malformed`` means the input itself could not be
    read (exit 2 from the CLI), every other code is a failed check on well-formed input (exit 1).

    :param code: the reason.
    :param message: one line naming the problem (and the file, for unreadable input); line
        breaks are folded into spaces, since the CLI contract is one line on stderr.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        self.message = one_line(message)
        super().__init__(self.message)

    @property
    def is_malformed(self) -> bool:
        """:return: whether the input could not be read at all."""
        return self.code is ErrorCode.MALFORMED


def malformed(message: str) -> VerificationError:
    """:return: a ``malformed`` error with ``message``."""
    return VerificationError(ErrorCode.MALFORMED, message)


_SPACES = re.compile(r"\s+")
_MAX_DETAIL = 300


def one_line(text: str) -> str:
    """:return: ``text`` with every run of white space (line breaks included) made one space."""
    return _SPACES.sub(" ", text).strip()


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
