"""A session with a MIFARE DESFire EV1/EV2/EV3 badge over any smart-card connection.

:class:`DesfireSession` builds every command as a wrapped native command
(``90 CMD 00 00 Lc CmdHeader ‖ CmdData 00``) and sends it through one
:class:`~mie.core.processors.SmartCardProtocol` on the DESFire recipe
(:data:`~mie.desfire.stack.DESFIRE_LAYERS`, success ``9100``). Authentications run on the plain
stack and install an :class:`~mie.desfire.channel.Ev2Channel` on top; from then on each command
is protected as :data:`~mie.desfire.constants.COMMAND_MODES` (or the file's comm mode) says.

Every response MAC is checked before any data is returned. The channel is dropped, as the badge
drops its side, on any error status, on SelectApplication and on a new authentication. No key,
RndA, RndB or session key appears in a log line, repr or message.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from mie.core.apdu import CommandApdu
from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection
from mie.core.errors import BadResponseError
from mie.core.processors import SmartCardProtocol
from mie.desfire import constants as c
from mie.desfire import crypto
from mie.desfire.channel import Ev1Channel, Ev2Channel
from mie.desfire.errors import (
    CardCryptogramError,
    DesfireAuthenticationError,
    DesfireStatusError,
)
from mie.desfire.stack import DESFIRE_LAYERS, DESFIRE_SUCCESS, NATIVE_LE
from mie.desfire.types import (
    COMM_MODE_BYTES,
    AccessRights,
    FileSettings,
    KeySettings,
    KeyType,
    Version,
)

logger = logging.getLogger(__name__)

AID_SIZE = 3
PICC_AID = bytes(AID_SIZE)
MAX_KEY_NO = 0x0D
MAX_FILE_NO = 0x1F
MAX_OFFSET = 0xFFFFFF

GET_DATA_UID = bytes.fromhex("FFCA000000")
"""PC/SC part 3 GET DATA of the UID, answered by the reader."""
SW_READER_OK = 0x9000

Rng = Callable[[int], bytes]


@dataclass(frozen=True)
class AuthState:
    """Who the session is authenticated as.

    :param scheme: ``"ev2"``, ``"ev1-aes"`` or ``"legacy"``.
    :param key_no: the key number authenticated with.
    :param aid: the application selected (wire order), :data:`PICC_AID` at PICC level.
    """

    scheme: str
    key_no: int
    aid: bytes


def _check_aid(aid: bytes) -> bytes:
    if not isinstance(aid, bytes | bytearray) or len(aid) != AID_SIZE:
        raise ValueError(f"An AID is 3 bytes (wire order), got {len(aid)}")
    return bytes(aid)


def _check_key(key_no: int, key: bytes) -> None:
    if not 0 <= key_no <= MAX_KEY_NO:
        raise ValueError(f"key_no must be 0..13, got {key_no}")
    if len(key) != crypto.KEY_SIZE:
        raise ValueError(f"An AES key is 16 bytes, got {len(key)}")


def _check_file(file_no: int) -> None:
    if not 0 <= file_no <= MAX_FILE_NO:
        raise ValueError(f"file_no must be 0..31, got {file_no}")


def _u24(name: str, value: int) -> bytes:
    if not 0 <= value <= MAX_OFFSET:
        raise ValueError(f"{name} must be 0..16777215, got {value}")
    return value.to_bytes(3, "little")


class DesfireSession:
    """Commands to one DESFire badge.

    :param connection: any smart-card connection (PC/SC, NFC, relay, emulated, replayed).
    :param rng: ``rng(n) -> n bytes``: where RndA comes from (the system's CSPRNG by default);
        tests and replays pass a deterministic one.
    """

    def __init__(self, connection: SmartCardConnection, *, rng: Rng | None = None) -> None:
        self.protocol = SmartCardProtocol(
            connection, layers=DESFIRE_LAYERS, success=DESFIRE_SUCCESS
        )
        self._rng: Rng = rng if rng is not None else secrets.token_bytes
        self._aid = PICC_AID
        self._auth: AuthState | None = None

    def __repr__(self) -> str:
        return f"DesfireSession(aid={self._aid.hex()}, auth={self.auth!r})"

    @property
    def auth(self) -> AuthState | None:
        """:return: the authentication in force, or ``None`` (the channel was dropped)."""
        if self._auth is not None and self.protocol.channel is None:
            self._auth = None
        return self._auth

    @property
    def aid(self) -> bytes:
        """:return: the selected application (wire order); :data:`PICC_AID` at PICC level."""
        return self._aid

    # --- the one send path --------------------------------------------------------------

    def _modes(self, cmd: int) -> tuple[CommMode, CommMode]:
        if self.protocol.channel is None:
            return CommMode.PLAIN, CommMode.PLAIN
        return c.COMMAND_MODES.get(cmd, (CommMode.PLAIN, CommMode.PLAIN))

    def _exchange(
        self,
        cmd: int,
        header: bytes = b"",
        data: bytes = b"",
        *,
        mode: CommMode = CommMode.PLAIN,
        response_mode: CommMode | None = None,
    ) -> tuple[bytes, int]:
        apdu = CommandApdu(c.CLA_NATIVE, cmd, 0, 0, header + data, NATIVE_LE)
        return self.protocol.transmit(
            apdu, header_length=len(header), mode=mode, response_mode=response_mode
        )

    def _command(
        self,
        cmd: int,
        header: bytes = b"",
        data: bytes = b"",
        *,
        mode: CommMode | None = None,
        response_mode: CommMode | None = None,
        unmaced: bool = False,
    ) -> bytes:
        """Send one command (all its frames) and return its data, checked and unprotected.

        :param cmd: the native command code.
        :param header: ``CmdHeader``: authenticated, never enciphered.
        :param data: ``CmdData``: enciphered in ``FULL`` mode.
        :param mode: the command's protection; ``None`` takes it from ``COMMAND_MODES``.
        :param response_mode: the response's; ``None`` as ``mode`` (or the table).
        :param unmaced: the response carries no MAC even under EV1 (ChangeKey of the key
            authenticated with); otherwise an EV1 session checks a MAC on every response.
        :return: the response data.
        :raises DesfireStatusError: any other status than ``9100`` (the channel is dropped);
            ``91AE`` here means the command needs an authentication.
        :raises ResponseIntegrityError: a response that does not verify (the channel is dropped).
        """
        if mode is None:
            mode, table_response = self._modes(cmd)
            response_mode = table_response if response_mode is None else response_mode
        response_mode = mode if response_mode is None else response_mode
        if (
            isinstance(self.protocol.channel, Ev1Channel)
            and response_mode is CommMode.PLAIN
            and not unmaced
        ):
            response_mode = CommMode.MAC
        response, sw = self._exchange(cmd, header, data, mode=mode, response_mode=response_mode)
        if sw != c.SW_OK:
            raise self._status_error(cmd, response, sw)
        return response

    def _command_without_data(
        self,
        name: str,
        cmd: int,
        header: bytes = b"",
        data: bytes = b"",
        *,
        mode: CommMode | None = None,
        response_mode: CommMode | None = None,
        unmaced: bool = False,
    ) -> None:
        """:meth:`_command` for a command the badge answers with its status alone.

        :raises BadResponseError: the answer carries data, even MACed: it is not this command's
            (in a transcript, another exchange's answer moved here).
        """
        answer = self._command(
            cmd, header, data, mode=mode, response_mode=response_mode, unmaced=unmaced
        )
        if answer:
            raise BadResponseError(f"The badge answered {name} with data")

    def _status_error(
        self, cmd: int, data: bytes, sw: int, *, handshake: bool = False
    ) -> DesfireStatusError:
        """Drop the session (the badge dropped its side) and :return: the error to raise:
        :class:`DesfireAuthenticationError` for ``91AE`` to an authentication message (the
        badge refused the key), :class:`DesfireStatusError` otherwise (``91AE`` to another
        command means it needs an authentication first)."""
        self.protocol.drop_channel()
        self._auth = None
        if handshake and sw == c.SW_AUTHENTICATION_ERROR:
            return DesfireAuthenticationError(data, sw, cmd)
        return DesfireStatusError(data, sw, cmd)

    # --- PICC and application level -------------------------------------------------------

    def get_version(self) -> Version:
        """GetVersion (``60``): three frames, hardware, software, then UID and production data.

        :return: the version.
        :raises BadResponseError: fewer than 28 bytes.
        """
        logger.debug("DESFire GetVersion")
        version = Version.parse(self._command(c.GET_VERSION))
        logger.info("DESFire badge: %s", version.product)
        return version

    def select_application(self, aid: bytes) -> None:
        """SelectApplication (``5A``): the badge ends its session, and so does the host.

        :param aid: 3 bytes in wire order (LSB first); :data:`PICC_AID` for the PICC level.
        :raises ValueError: an AID that is not 3 bytes (nothing sent).
        :raises DesfireStatusError: ``91A0`` (no such application) or another status.
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        aid = _check_aid(aid)
        logger.debug("DESFire SelectApplication %s", aid.hex())
        self._auth = None
        self.protocol.drop_channel()
        if self._command(c.SELECT_APPLICATION, aid, mode=CommMode.PLAIN):
            raise BadResponseError("The badge answered SelectApplication with data")
        self._aid = aid
        logger.info("DESFire application %s selected", aid.hex())

    def reader_uid(self) -> bytes:
        """The anticollision UID, from the reader (PC/SC part 3 GET DATA ``FF CA 00 00 00``):
        the badge never sees the command, so a session stays as it is. Under random UID it is
        4 bytes starting ``08`` and changes at each activation; the real UID is
        :meth:`get_card_uid`'s.

        :return: 4, 7 or 10 bytes.
        :raises BadResponseError: another status than ``9000``, or another length.
        """
        logger.debug("Reader GET DATA (UID)")
        data, sw = self.protocol.connection.send_and_receive(GET_DATA_UID)
        if sw != SW_READER_OK:
            raise BadResponseError(f"The reader answered GET DATA (UID) with SW {sw:04X}")
        if len(data) not in (4, 7, 10):
            raise BadResponseError(f"The reader gave a UID of {len(data)} bytes")
        logger.info("Anticollision UID of %d bytes", len(data))
        return bytes(data)

    # --- authentication --------------------------------------------------------------------

    def _rnd_a(self, size: int = crypto.RND_SIZE) -> bytes:
        rnd_a = bytes(self._rng(size))
        if len(rnd_a) != size:
            raise ValueError(f"The rng returned {len(rnd_a)} bytes, RndA needs {size}")
        return rnd_a

    def _handshake_step(self, cmd: int, data: bytes, expected_sw: int, size: int) -> bytes:
        response, sw = self._exchange(cmd, data=data)
        if sw != expected_sw:
            raise self._status_error(cmd, response, sw, handshake=True)
        if len(response) != size:
            raise BadResponseError(
                f"Authentication answer of {len(response)} bytes, expected {size}"
            )
        return response

    def _mutual(
        self, cmd: int, key_no: int, key: bytes, answer_size: int
    ) -> tuple[bytes, bytes, bytes]:
        """Both EV2 handshake exchanges (each message enciphered on its own, IV 0).

        :return: ``(RndA, RndB, the badge's deciphered answer)``.
        """
        first = bytes([key_no, 0x00]) if cmd == c.AUTH_EV2_FIRST else bytes([key_no])
        e_rnd_b = self._handshake_step(cmd, first, c.SW_ADDITIONAL_FRAME, crypto.RND_SIZE)
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, e_rnd_b)
        rnd_a = self._rnd_a()
        token = crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_a + crypto.rotate_left(rnd_b))
        answer = self._handshake_step(c.ADDITIONAL_FRAME, token, c.SW_OK, answer_size)
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, answer)
        rnd_a_rotated = plain[crypto.TI_SIZE : crypto.TI_SIZE + crypto.RND_SIZE]
        if cmd == c.AUTH_EV2_NON_FIRST:
            rnd_a_rotated = plain
        if not hmac.compare_digest(rnd_a_rotated, crypto.rotate_left(rnd_a)):
            raise CardCryptogramError(
                "The badge's answer does not carry RndA': it does not know the key"
            )
        return rnd_a, rnd_b, plain

    def authenticate_ev2_first(self, key_no: int, key: bytes) -> None:
        """AuthenticateEV2First (``71``) with an AES key; installs a new EV2 channel (CmdCtr 0).

        :param key_no: the key number in the selected application (0..13).
        :param key: the 16-byte AES key.
        :raises ValueError: a key number or key out of range (nothing sent).
        :raises DesfireAuthenticationError: the badge refused the cryptogram (``91AE``).
        :raises CardCryptogramError: the badge's answer does not prove it knows the key.
        :raises BadResponseError: an answer of the wrong length.
        """
        _check_key(key_no, key)
        logger.debug("DESFire AuthenticateEV2First, key %d", key_no)
        self._auth = None
        self.protocol.drop_channel()
        rnd_a, rnd_b, plain = self._mutual(c.AUTH_EV2_FIRST, key_no, key, 2 * crypto.RND_SIZE)
        enc, mac = crypto.ev2_session_keys(key, rnd_a, rnd_b)
        self.protocol.install_channel(Ev2Channel(enc, mac, plain[: crypto.TI_SIZE]))
        self._auth = AuthState("ev2", key_no, self._aid)
        logger.info("DESFire EV2 authentication with key %d", key_no)

    def authenticate_ev2_non_first(self, key_no: int, key: bytes) -> None:
        """AuthenticateEV2NonFirst (``77``): re-key the EV2 session with another key, keeping
        TI and CmdCtr.

        :param key_no: the key number (0..13).
        :param key: the 16-byte AES key.
        :raises ValueError: no EV2 channel, or a key out of range (nothing sent).
        :raises DesfireAuthenticationError: ``91AE`` (the session is gone).
        :raises CardCryptogramError: the badge's answer does not carry RndA'.
        """
        _check_key(key_no, key)
        if not isinstance(self.protocol.channel, Ev2Channel):
            raise ValueError("AuthenticateEV2NonFirst needs an EV2 session: authenticate first")
        logger.debug("DESFire AuthenticateEV2NonFirst, key %d", key_no)
        old = self.protocol.detach_channel()
        if not isinstance(old, Ev2Channel):  # pragma: no cover - checked above
            raise ValueError("AuthenticateEV2NonFirst needs an EV2 session")
        self._auth = None
        try:
            rnd_a, rnd_b, _ = self._mutual(c.AUTH_EV2_NON_FIRST, key_no, key, crypto.RND_SIZE)
            self.protocol.install_channel(old.rekeyed(*crypto.ev2_session_keys(key, rnd_a, rnd_b)))
        finally:
            old.dropped()
        self._auth = AuthState("ev2", key_no, self._aid)
        logger.info("DESFire EV2 re-authentication with key %d", key_no)

    def authenticate_aes(self, key_no: int, key: bytes) -> None:
        """AuthenticateAES (``AA``, EV1) with an AES key; installs an EV1 channel.

        EV1 chains CBC over the whole handshake: ``E(RndB)`` under IV 0, ``E(RndA ‖ RndB')``
        from the last block received, ``E(RndA')`` from the last block sent.

        :param key_no: the key number (0..13).
        :param key: the 16-byte AES key.
        :raises ValueError: a key number or key out of range (nothing sent).
        :raises DesfireAuthenticationError: ``91AE``.
        :raises CardCryptogramError: the badge's answer does not carry RndA'.
        """
        _check_key(key_no, key)
        logger.debug("DESFire AuthenticateAES, key %d", key_no)
        self._auth = None
        self.protocol.drop_channel()
        e_rnd_b = self._handshake_step(
            c.AUTH_AES, bytes([key_no]), c.SW_ADDITIONAL_FRAME, crypto.RND_SIZE
        )
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, e_rnd_b)
        rnd_a = self._rnd_a()
        token = crypto.aes_cbc_encrypt(key, e_rnd_b, rnd_a + crypto.rotate_left(rnd_b))
        answer = self._handshake_step(c.ADDITIONAL_FRAME, token, c.SW_OK, crypto.RND_SIZE)
        rotated = crypto.aes_cbc_decrypt(key, token[-crypto.BLOCK_SIZE :], answer)
        if not hmac.compare_digest(rotated, crypto.rotate_left(rnd_a)):
            raise CardCryptogramError(
                "The badge's answer does not carry RndA': it does not know the key"
            )
        self.protocol.install_channel(Ev1Channel(crypto.ev1_session_key(rnd_a, rnd_b)))
        self._auth = AuthState("ev1-aes", key_no, self._aid)
        logger.info("DESFire EV1 AES authentication with key %d", key_no)

    # --- files -----------------------------------------------------------------------------

    def read_data(self, file_no: int, offset: int = 0, length: int = 0, *, mode: CommMode) -> bytes:
        """ReadData (``BD``) from a standard or backup data file.

        :param file_no: the file number (0..31).
        :param offset: where to start.
        :param length: how many bytes; 0 reads to the end of the file.
        :param mode: the file's comm mode (the response's protection; the command is MACed
            in MAC and FULL mode).
        :return: the data, once its MAC verified.
        :raises ValueError: an argument out of range (nothing sent).
        :raises SecureMessagingError: MAC or FULL without a channel (nothing sent).
        :raises ResponseIntegrityError: the response does not verify (no data returned).
        :raises BadResponseError: not ``length`` bytes.
        """
        _check_file(file_no)
        header = bytes([file_no]) + _u24("offset", offset) + _u24("length", length)
        logger.debug("DESFire ReadData file %d (%s)", file_no, mode.value)
        command_mode = CommMode.PLAIN if mode is CommMode.PLAIN else CommMode.MAC
        data = self._command(c.READ_DATA, header, mode=command_mode, response_mode=mode)
        if length and len(data) != length:
            raise BadResponseError(f"ReadData answered {len(data)} bytes, asked for {length}")
        logger.info("DESFire ReadData file %d: %d bytes", file_no, len(data))
        return data

    def write_data(self, file_no: int, data: bytes, offset: int = 0, *, mode: CommMode) -> None:
        """WriteData (``3D``) to a standard or backup data file.

        :param file_no: the file number (0..31).
        :param data: 1..16777215 bytes.
        :param offset: where to start.
        :param mode: the file's comm mode (the command's protection; the answer is MACed in MAC
            and FULL mode).
        :raises ValueError: an argument out of range (nothing sent).
        :raises ResponseIntegrityError: the answer's MAC does not verify.
        """
        _check_file(file_no)
        if not data:
            raise ValueError("WriteData needs at least one byte")
        header = bytes([file_no]) + _u24("offset", offset) + _u24("length", len(data))
        logger.debug("DESFire WriteData file %d (%s)", file_no, mode.value)
        response_mode = CommMode.PLAIN if mode is CommMode.PLAIN else CommMode.MAC
        answer = self._command(
            c.WRITE_DATA, header, bytes(data), mode=mode, response_mode=response_mode
        )
        if answer:
            raise BadResponseError(f"WriteData answered {len(answer)} unexpected bytes")
        logger.info("DESFire WriteData file %d: %d bytes", file_no, len(data))

    def get_file_settings(self, file_no: int) -> FileSettings:
        """GetFileSettings (``F5``), MACed inside a session.

        :param file_no: the file number (0..31).
        :return: the settings of a standard or backup data file.
        :raises BadResponseError: another kind of file.
        """
        _check_file(file_no)
        logger.debug("DESFire GetFileSettings file %d", file_no)
        settings = FileSettings.parse(self._command(c.GET_FILE_SETTINGS, bytes([file_no])))
        logger.info("DESFire file %d: %d bytes, %s", file_no, settings.size, settings.mode.value)
        return settings

    def get_key_settings(self) -> KeySettings:
        """GetKeySettings (``45``) of the selected application or the PICC.

        :return: the settings, the number of keys and their type.
        """
        logger.debug("DESFire GetKeySettings")
        settings = KeySettings.parse(self._command(c.GET_KEY_SETTINGS))
        logger.info("DESFire key settings: %d %s keys", settings.max_keys, settings.key_type.name)
        return settings

    def get_key_version(self, key_no: int) -> int:
        """GetKeyVersion (``64``).

        :param key_no: the key number (0..13).
        :return: the key's version byte.
        """
        if not 0 <= key_no <= MAX_KEY_NO:
            raise ValueError(f"key_no must be 0..13, got {key_no}")
        logger.debug("DESFire GetKeyVersion %d", key_no)
        answer = self._command(c.GET_KEY_VERSION, bytes([key_no]))
        if len(answer) != 1:
            raise BadResponseError(f"GetKeyVersion answered {len(answer)} bytes, expected 1")
        logger.info("DESFire key %d: version %d", key_no, answer[0])
        return answer[0]

    def get_application_ids(self) -> tuple[bytes, ...]:
        """GetApplicationIDs (``6A``) at PICC level.

        :return: the AIDs, each 3 bytes in wire order.
        """
        logger.debug("DESFire GetApplicationIDs")
        answer = self._command(c.GET_APPLICATION_IDS)
        if len(answer) % AID_SIZE:
            raise BadResponseError(f"GetApplicationIDs answered {len(answer)} bytes")
        aids = tuple(answer[i : i + AID_SIZE] for i in range(0, len(answer), AID_SIZE))
        logger.info("DESFire badge: %d applications", len(aids))
        return aids

    def get_file_ids(self) -> bytes:
        """GetFileIDs (``6F``) of the selected application.

        :return: the file numbers, one byte each.
        """
        logger.debug("DESFire GetFileIDs")
        answer = self._command(c.GET_FILE_IDS)
        if len(answer) > MAX_FILE_NO + 1:
            raise BadResponseError(f"GetFileIDs answered {len(answer)} bytes")
        logger.info("DESFire application: %d files", len(answer))
        return answer

    def get_card_uid(self) -> bytes:
        """GetCardUID (``51``): the real UID, even with random UID on; needs a session.

        :return: the 7-byte UID, deciphered once its MAC verified.
        :raises ValueError: no session (nothing sent).
        :raises BadResponseError: not 7 bytes.
        """
        if self.protocol.channel is None:
            raise ValueError("GetCardUID needs an authenticated session")
        logger.debug("DESFire GetCardUID")
        uid = self._command(c.GET_CARD_UID)
        if len(uid) != crypto.UID_SIZE:
            raise BadResponseError(f"GetCardUID answered {len(uid)} bytes, expected 7")
        logger.info("DESFire real UID read")
        return uid

    def read_signature(self, *, mode: CommMode | None = None) -> bytes:
        """Read_Sig (``3C 00``): the 56-byte originality signature, answered with ``9190``.

        Outside a session it goes in clear (CommMode.Plain). Inside one (EV2 or EV1) the
        command is MACed and the answer comes enciphered and MACed (CommMode.Full, the
        :data:`~mie.desfire.constants.COMMAND_MODES` entry says what that rests on; [I] for
        DESFire EV2/EV3); its MAC (EV2) or CRC32 (EV1) is checked before the signature is
        returned, and the session goes on. The signature is static: read in clear it tracks a
        badge whatever its random UID.

        :param mode: ``None``: as the session stands (plain outside, FULL inside);
            ``PLAIN`` or ``FULL`` says which is expected and refuses the other state.
        :return: ``r ‖ s`` (secp224r1), to check with
            :func:`~mie.desfire.crypto.verify_originality_signature`.
        :raises ValueError: ``mode`` PLAIN inside a session, FULL outside one, or MAC
            (nothing sent).
        :raises ResponseIntegrityError: the protected answer does not verify (the session is
            dropped, nothing returned).
        :raises BadResponseError: not 56 bytes.
        :raises DesfireStatusError: another status than ``9190`` (the session is dropped).
        """
        inside = self.protocol.channel is not None
        if mode is None:
            mode = CommMode.FULL if inside else CommMode.PLAIN
        if mode is CommMode.MAC:
            raise ValueError("Read_Sig is read in PLAIN (no session) or FULL (in a session)")
        if mode is CommMode.FULL and not inside:
            raise ValueError("Read_Sig in full mode outside a session: FULL needs one")
        if mode is CommMode.PLAIN and inside:
            raise ValueError("Read_Sig in plain mode inside a session: the badge answers in FULL")
        logger.debug("DESFire Read_Sig (%s)", mode.value)
        if inside:
            command_mode, response_mode = c.COMMAND_MODES[c.READ_SIG]
            # Its 9190 is this command's success: the channel must check and unwrap it.
            settings = self.protocol.settings
            self.protocol.configure(success=settings.success | {c.SW_SIGNATURE})
            try:
                response, sw = self._exchange(
                    c.READ_SIG, b"\x00", mode=command_mode, response_mode=response_mode
                )
            finally:
                self.protocol.configure(success=settings.success)
        else:
            response, sw = self._exchange(c.READ_SIG, b"\x00")
        if sw != c.SW_SIGNATURE:
            raise self._status_error(c.READ_SIG, response, sw)
        if len(response) != crypto.ORIGINALITY_SIGNATURE_SIZE:
            if inside:
                self.protocol.drop_channel()
                self._auth = None
            raise BadResponseError(f"Read_Sig answered {len(response)} bytes, expected 56")
        logger.info("DESFire originality signature read (%s)", mode.value)
        return response

    # --- personalisation -------------------------------------------------------------------

    def change_key(
        self,
        key_no: int,
        new_key: bytes,
        *,
        version: int,
        old_key: bytes | None = None,
        key_type: KeyType = KeyType.AES,
    ) -> None:
        """ChangeKey (``C4``), enciphered: ``KeyNo`` in clear, then for the key authenticated
        with ``new ‖ version``, for another key ``(new XOR old) ‖ version ‖ CRC32(new)`` (an EV1
        session adds its CRC32 of the command). Changing the key authenticated with ends the
        session: the badge answers without a MAC and the channel is dropped.

        :param key_no: the key to change (0..13).
        :param new_key: the new 16-byte AES key.
        :param version: the new key's version byte.
        :param old_key: the key's current value; needed for another key than the one
            authenticated with.
        :param key_type: the new key's type, sent in ``KeyNo`` at PICC level (AES only here;
            DES keys are :mod:`mie.hazmat`'s).
        :raises ValueError: no session, an argument out of range, or ``old_key`` missing
            (nothing sent).
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        auth = self.auth
        if auth is None:
            raise ValueError("ChangeKey needs an authenticated session")
        _check_key(key_no, new_key)
        if key_type is not KeyType.AES:
            raise ValueError("ChangeKey sets AES keys; DES keys are mie.hazmat's")
        if not 0 <= version <= 0xFF:
            raise ValueError(f"A key version is one byte, got {version}")
        same = key_no == auth.key_no
        if same:
            data = bytes(new_key) + bytes([version])
        else:
            if old_key is None or len(old_key) != crypto.KEY_SIZE:
                raise ValueError("ChangeKey of another key needs its current 16-byte value")
            xored = bytes(a ^ b for a, b in zip(new_key, old_key, strict=True))
            data = xored + bytes([version]) + crypto.crc32(bytes(new_key))
        header = bytes([key_no | key_type.value if self._aid == PICC_AID else key_no])
        logger.debug("DESFire ChangeKey %d", key_no)
        if same:
            try:
                self._command_without_data(
                    "ChangeKey",
                    c.CHANGE_KEY,
                    header,
                    data,
                    mode=CommMode.FULL,
                    response_mode=CommMode.PLAIN,
                    unmaced=True,
                )
            finally:
                self.protocol.drop_channel()
                self._auth = None
        else:
            self._command_without_data("ChangeKey", c.CHANGE_KEY, header, data)
        logger.info("DESFire key %d changed (version %d)", key_no, version)

    def create_application(
        self, aid: bytes, *, keys: int, key_settings: int = 0x0B, key_type: KeyType = KeyType.AES
    ) -> None:
        """CreateApplication (``CA``) at PICC level.

        :param aid: 3 bytes, wire order.
        :param keys: how many keys (1..14).
        :param key_settings: the application's key settings byte.
        :param key_type: the type of its keys.
        :raises ValueError: an argument out of range (nothing sent).
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        aid = _check_aid(aid)
        if not 1 <= keys <= MAX_KEY_NO + 1:
            raise ValueError(f"An application has 1..14 keys, got {keys}")
        if not 0 <= key_settings <= 0xFF:
            raise ValueError(f"Key settings are one byte, got {key_settings}")
        logger.debug("DESFire CreateApplication %s", aid.hex())
        self._command_without_data(
            "CreateApplication",
            c.CREATE_APPLICATION,
            aid + bytes([key_settings, key_type.value | keys]),
        )
        logger.info("DESFire application %s created", aid.hex())

    def delete_application(self, aid: bytes) -> None:
        """DeleteApplication (``DA``) at PICC level.

        :param aid: 3 bytes, wire order.
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        aid = _check_aid(aid)
        logger.debug("DESFire DeleteApplication %s", aid.hex())
        self._command_without_data("DeleteApplication", c.DELETE_APPLICATION, aid)
        logger.info("DESFire application %s deleted", aid.hex())

    def create_std_data_file(
        self, file_no: int, size: int, *, mode: CommMode, access: AccessRights
    ) -> None:
        """CreateStdDataFile (``CD``) in the selected application.

        :param file_no: the file number (0..31).
        :param size: its size in bytes (1..16777215).
        :param mode: its comm mode.
        :param access: its access rights.
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        _check_file(file_no)
        if size < 1:
            raise ValueError(f"A data file has at least one byte, got {size}")
        header = bytes([file_no, COMM_MODE_BYTES[mode]]) + access.encode() + _u24("size", size)
        logger.debug("DESFire CreateStdDataFile %d", file_no)
        self._command_without_data("CreateStdDataFile", c.CREATE_STD_DATA_FILE, header)
        logger.info("DESFire file %d created (%d bytes, %s)", file_no, size, mode.value)

    def set_configuration(self, *, random_uid: bool, disable_format: bool = False) -> None:
        """SetConfiguration (``5C``) option ``00``, enciphered, at PICC level. Random UID on is
        irreversible on a real badge.

        :param random_uid: answer anticollision with a random UID from now on.
        :param disable_format: refuse FormatPICC from now on.
        :raises ValueError: no session (nothing sent).
        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        if self.protocol.channel is None:
            raise ValueError("SetConfiguration needs an authenticated session")
        flags = (0x02 if random_uid else 0) | (0x01 if disable_format else 0)
        logger.debug("DESFire SetConfiguration")
        self._command_without_data("SetConfiguration", c.SET_CONFIGURATION, b"\x00", bytes([flags]))
        logger.info(
            "DESFire configuration set (random UID %s, format %s)",
            "on" if random_uid else "off",
            "disabled" if disable_format else "enabled",
        )

    def format_picc(self) -> None:
        """FormatPICC (``FC``): deletes every application; needs the PICC master key.

        :raises BadResponseError: an answer with data (the badge answers the status alone).
        """
        logger.debug("DESFire FormatPICC")
        self._command_without_data("FormatPICC", c.FORMAT_PICC)
        logger.info("DESFire badge formatted")
