"""DESFire's stack recipe: native wrapping at the bottom, ``AF`` chaining above it.

:data:`DESFIRE_LAYERS` takes the place of :data:`mie.core.processors.ISO7816_LAYERS` for a
DESFire badge, with success ``9100`` (:data:`DESFIRE_SUCCESS`). The secure channel sits above
both (:mod:`mie.desfire.channel`): it protects a command whole before ``AF`` chaining cuts it,
and checks a response whole once the frames are collected.
"""

from __future__ import annotations

from typing import Final

from mie.core.apdu import SHORT_MAX_DATA, CommandApdu
from mie.core.errors import ApduFormatError, BadResponseError
from mie.core.processors import ApduProcessor, ChainedProcessor, Layer, StackSettings
from mie.desfire.constants import (
    ADDITIONAL_FRAME,
    AUTHENTICATIONS,
    CLA_NATIVE,
    SW1_NATIVE,
    SW_ADDITIONAL_FRAME,
    SW_OK,
)

DESFIRE_SUCCESS: Final = frozenset({SW_OK})
"""No DESFire command answers ``9000``: success is ``9100``."""
COMMAND_FRAME: Final = 54
"""Data bytes in one command frame (PM3's ``DESFIRE_TX_FRAME_MAX_LEN``)."""
MAX_FRAMES: Final = 256
MAX_RESPONSE: Final = 64 * 1024
NATIVE_LE: Final = 256
"""A wrapped command always ends with Le ``00``."""

PASS_THROUGH: Final = AUTHENTICATIONS | {ADDITIONAL_FRAME}


class NativeWrappingProcessor(ChainedProcessor):
    """Sends wrapped native commands (``90 CMD 00 00 [Lc data] 00``) and checks the answer is a
    native status (``91xx``).

    :raises ApduFormatError: a command that is not ``CLA 90, P1 P2 00 00`` or carries more than
        255 data bytes (nothing is sent).
    :raises BadResponseError: an answer whose SW1 is not ``91``.
    """

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.cla != CLA_NATIVE or apdu.p1 or apdu.p2:
            raise ApduFormatError(
                "Not a wrapped DESFire command: "
                f"CLA {apdu.cla:02X}, P1 P2 {apdu.p1:02X}{apdu.p2:02X}"
            )
        if len(apdu.data) > SHORT_MAX_DATA:
            raise ApduFormatError(
                f"A DESFire frame carries 255 data bytes at most, got {len(apdu.data)}"
            )
        data, sw = self.delegate.send_apdu(apdu.with_le(NATIVE_LE))
        if sw >> 8 != SW1_NATIVE:
            raise BadResponseError(f"SW {sw:04X} is not a DESFire status")
        return data, sw


class AfChainingProcessor(ChainedProcessor):
    """DESFire ``AF`` frames both ways.

    A command's data goes ``frame`` bytes at a time: the first frame with its command code, the
    next ones as ``90 AF 00 00 Lc part 00``, each answered ``91AF`` without data; any other
    answer to a command frame ends the chain with it. A response answered ``91AF`` is collected
    with ``90 AF 00 00 00`` until another status. An authentication's ``91AF`` asks for the
    host's next message, and an ``AF`` the session sends is that message: both pass through.

    :param delegate: the layer below.
    :param frame: the most data bytes one command frame carries.
    :param max_frames: the most response frames collected for one command.
    :raises BadResponseError: the badge kept answering ``91AF`` (more than ``max_frames``
        frames, or more than 64 KiB).
    """

    def __init__(
        self, delegate: ApduProcessor, frame: int = COMMAND_FRAME, max_frames: int = MAX_FRAMES
    ) -> None:
        super().__init__(delegate)
        if not 1 <= frame <= SHORT_MAX_DATA:
            raise ValueError(f"The frame size must be 1..255, got {frame}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.frame = frame
        self.max_frames = max_frames

    @staticmethod
    def _next(data: bytes) -> CommandApdu:
        return CommandApdu(CLA_NATIVE, ADDITIONAL_FRAME, 0, 0, data, NATIVE_LE)

    def send_apdu(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.ins in PASS_THROUGH:
            return self.delegate.send_apdu(apdu)
        step = self.frame
        parts = [apdu.data[i : i + step] for i in range(step, len(apdu.data), step)]
        first = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data[:step], NATIVE_LE)
        data, sw = self.delegate.send_apdu(first)
        for part in parts:
            if sw != SW_ADDITIONAL_FRAME or data:
                return data, sw
            data, sw = self.delegate.send_apdu(self._next(part))
        chunks, size = [data], len(data)
        while sw == SW_ADDITIONAL_FRAME and len(chunks) < self.max_frames and size <= MAX_RESPONSE:
            data, sw = self.delegate.send_apdu(self._next(b""))
            chunks.append(data)
            size += len(data)
        if sw == SW_ADDITIONAL_FRAME or size > MAX_RESPONSE:
            raise BadResponseError(
                f"The badge kept answering AF ({len(chunks)} frames, {size} bytes)"
            )
        return b"".join(chunks), sw


def native_wrapping(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    """:return: the native wrapping layer (:class:`NativeWrappingProcessor`)."""
    return NativeWrappingProcessor(delegate)


def af_chaining(delegate: ApduProcessor, settings: StackSettings) -> ApduProcessor:
    """:return: the ``AF`` chaining layer (:class:`AfChainingProcessor`), 54-byte frames."""
    return AfChainingProcessor(delegate)


DESFIRE_LAYERS: Final[tuple[Layer, ...]] = (native_wrapping, af_chaining)
"""The DESFire recipe, bottom to top above the :class:`~mie.core.processors.ApduFormatter`."""
