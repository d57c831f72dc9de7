"""Smart-card core: APDU and TLV codecs, the connection interface and the processor stack.

This package imports no hardware stack.
"""

from __future__ import annotations

from mie.core.apdu import CommandApdu, split_response
from mie.core.atr import Atr
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import (
    ApduError,
    ApduFormatError,
    ApplicationNotAvailableError,
    BadResponseError,
    CardRemovedError,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    NoReaderError,
    PcscUnavailableError,
    PinBlockedError,
    ReaderBusyError,
    SecurityStatusError,
    SignatureInvalidError,
    TlvError,
    TransportError,
    TransportTimeoutError,
    UnsupportedCardError,
)
from mie.core.processors import (
    ApduFormatter,
    ApduProcessor,
    ChainedProcessor,
    CommandChainingProcessor,
    ResponseChainingProcessor,
    SecureMessagingProcessor,
    SmartCardProtocol,
    WrongLengthProcessor,
)
from mie.core.sw import SW, describe_sw
from mie.core.tlv import Tlv, encode_tlvs, parse_tlvs, tlv_dict

__all__ = [
    "SW",
    "ApduError",
    "ApduFormatError",
    "ApduFormatter",
    "ApduProcessor",
    "ApplicationNotAvailableError",
    "Atr",
    "BadResponseError",
    "CardRemovedError",
    "ChainedProcessor",
    "CommandApdu",
    "CommandChainingProcessor",
    "InvalidPinError",
    "LastTryRefusedError",
    "MieError",
    "NoCardError",
    "NoReaderError",
    "PcscUnavailableError",
    "PinBlockedError",
    "ReaderBusyError",
    "ResponseChainingProcessor",
    "SecureMessagingProcessor",
    "SecurityStatusError",
    "SignatureInvalidError",
    "SmartCardConnection",
    "SmartCardProtocol",
    "Tlv",
    "TlvError",
    "Transport",
    "TransportError",
    "TransportTimeoutError",
    "UnsupportedCardError",
    "WrongLengthProcessor",
    "describe_sw",
    "encode_tlvs",
    "parse_tlvs",
    "split_response",
    "tlv_dict",
]
