"""``mie desfire``: MIFARE DESFire badges: key diversification, inspection, enrolment.

``diversify`` computes an AN10922 AES-128 key from the command line alone. ``info`` reads what
any reader can (GetVersion, the applications, the originality signature) and, with a badge
configuration whose key provider holds the UID-read key, the real UID behind a random UID.
``enroll`` personalises blank badges (:mod:`mie.desfire.enrol`). A PIN is read from standard
input only, and never printed.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from mie._cli.options import badge_config_option, load_badge_config
from mie._cli.output import emit_json, json_option, warn
from mie._cli.state import CliState, UsageError
from mie.core.errors import ApduError, BadResponseError, UnsupportedCardError

if TYPE_CHECKING:
    from mie.desfire.config import BadgeConfig
    from mie.desfire.session import DesfireSession
    from mie.desfire.types import ChipVersion

UID_BYTES = 7
AID_BYTES = 3
KEY_BYTES = 16
MIN_SYSTEM_ID = 6
MAX_SYSTEM_ID = 21
UID_READ_KEY_NO = 1
"""The shared UID-read key of the MIE application (plan §2.3)."""


def parse_hex(value: str, option: str, sizes: range) -> bytes:
    """:return: the bytes an option gives in hex.

    :param value: the option's text.
    :param option: the option's name, for the message.
    :param sizes: the lengths accepted, in bytes.
    :raises UsageError: not hex, or of another length (the value is not shown: it may be a key).
    """
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"{option} is not hex") from None
    if len(data) not in sizes:
        wanted = str(sizes.start) if len(sizes) == 1 else f"{sizes.start} to {sizes.stop - 1}"
        raise UsageError(f"{option} must be {wanted} bytes, not {len(data)}")
    return data


@click.group("desfire")
def desfire_group() -> None:
    """MIFARE DESFire badges: diversify a key, inspect a badge, enrol badges."""


@desfire_group.command()
@click.option("--master-key", required=True, help="The AES-128 master key, 16 bytes in hex.")
@click.option("--uid", required=True, help="The badge's real UID, 7 bytes in hex.")
@click.option(
    "--aid", required=True, help="The application, 3 bytes in hex, wire order (LSB first)."
)
@click.option(
    "--system-id",
    required=True,
    help=f"The system identifier, {MIN_SYSTEM_ID} to {MAX_SYSTEM_ID} bytes in hex.",
)
@json_option('Print {"key": HEX}.')
def diversify(master_key: str, uid: str, aid: str, system_id: str, as_json: bool) -> int:
    """Print the AN10922 AES-128 key diversified from the master key for UID ‖ AID ‖ SYSTEM-ID,
    in hex."""
    from mie.desfire.crypto import diversify_aes128

    master = parse_hex(master_key, "--master-key", range(KEY_BYTES, KEY_BYTES + 1))
    message = (
        parse_hex(uid, "--uid", range(UID_BYTES, UID_BYTES + 1))
        + parse_hex(aid, "--aid", range(AID_BYTES, AID_BYTES + 1))
        + parse_hex(system_id, "--system-id", range(MIN_SYSTEM_ID, MAX_SYSTEM_ID + 1))
    )
    key = diversify_aes128(master, message).hex()
    if as_json:
        emit_json({"key": key})
    else:
        click.echo(key)
    return 0


@desfire_group.command()
@click.option("--reader", "-r", help="Reader name or a unique part of it, or nfc:PATH (nfcpy).")
@badge_config_option
@json_option("Print the badge's description as JSON.")
@click.pass_obj
def info(state: CliState, reader: str | None, badge_config: str | None, as_json: bool) -> int:
    """Describe the DESFire badge in the reader: product, versions, UID, applications,
    originality; with a badge configuration and its keys, the real UID behind a random UID."""
    config = load_badge_config(badge_config, required=False)
    from mie.desfire.session import DesfireSession

    with state.open_reader(reader) as connection:
        state.kind = "desfire"
        description = describe_badge(DesfireSession(connection), config)
    if as_json:
        emit_json(description)
    else:
        _print_description(description)
    return 0


def _chip(chip: ChipVersion) -> dict[str, int]:
    return asdict(chip)


def describe_badge(session: DesfireSession, config: BadgeConfig | None) -> dict[str, Any]:
    """Read what :command:`mie desfire info` shows (plan §4.4).

    :param session: a session on the badge, at PICC level, not authenticated.
    :param config: the badge configuration, or ``None`` (the default AID, NXP keys only).
    :return: the JSON object.
    :raises UnsupportedCardError: the card does not answer GetVersion as a DESFire badge.
    """
    from mie.desfire.config import DEFAULT_AID
    from mie.desfire.crypto import NXP_ORIGINALITY_KEYS
    from mie.desfire.errors import DesfireStatusError

    try:
        anticollision: bytes | None = session.reader_uid()
    except (BadResponseError, ApduError):
        anticollision = None
    try:
        version = session.get_version()
    except (BadResponseError, ApduError) as e:
        raise UnsupportedCardError(
            f"The card is not a DESFire badge: GetVersion failed ({e})"
        ) from e
    try:
        signature: bytes | None = session.read_signature()
    except (BadResponseError, DesfireStatusError):
        signature = None
    try:
        applications: tuple[bytes, ...] | None = session.get_application_ids()
    except DesfireStatusError:
        applications = None  # the PICC settings ask for an authentication first
    aid = config.aid if config is not None else DEFAULT_AID
    if applications is not None:
        has_application = aid in applications
    else:
        has_application = _selects(session, aid)
    uid = version.uid
    if uid is None and config is not None and config.keys is not None and has_application:
        uid = _real_uid(session, config, version.product)
    originality = None
    if signature is not None:
        keys = config.originality_key_set() if config is not None else NXP_ORIGINALITY_KEYS
        originality = _originality(uid, signature, keys)
    return {
        "product": version.product,
        "hw": _chip(version.hw),
        "sw": _chip(version.sw),
        "storage_bytes": version.storage_bytes,
        "uid": uid.hex() if uid is not None else None,
        "random_uid": version.uid is None,
        "anticollision_uid": anticollision.hex() if anticollision is not None else None,
        "originality": originality,
        "applications": [a.hex() for a in applications] if applications is not None else None,
        "mie_application": has_application,
    }


def _selects(session: DesfireSession, aid: bytes) -> bool:
    from mie.desfire.errors import DesfireStatusError

    try:
        session.select_application(aid)
    except DesfireStatusError:
        return False
    session.select_application(bytes(AID_BYTES))
    return True


def _real_uid(session: DesfireSession, config: BadgeConfig, product: str) -> bytes | None:
    """:return: the real UID, read with the shared UID-read key, or ``None`` (with a warning)
    when the badge refuses that key."""
    from mie.desfire.config import open_keys
    from mie.desfire.errors import DesfireAuthenticationError

    with open_keys(config) as keys:
        key = keys.diversify(config.labels.uid_read, config.uid_read_input())
    session.select_application(config.aid)
    try:
        if product == "EV1":
            session.authenticate_aes(UID_READ_KEY_NO, key)
        else:
            session.authenticate_ev2_first(UID_READ_KEY_NO, key)
    except DesfireAuthenticationError:
        warn("warning: the badge refused the configuration's UID-read key: real UID not read")
        return None
    return session.get_card_uid()


def _originality(uid: bytes | None, signature: bytes, keys: Any) -> dict[str, Any]:
    from mie.desfire.crypto import verify_originality_signature
    from mie.desfire.errors import OriginalitySignatureError

    if uid is None:
        return {"key": None, "verified": False}
    try:
        key = verify_originality_signature(uid, signature, keys)
    except OriginalitySignatureError:
        return {"key": None, "verified": False}
    return {"key": key.name, "verified": True}


def _print_description(description: dict[str, Any]) -> None:
    hw, sw = description["hw"], description["sw"]
    click.echo(f"DESFire {description['product']}")
    click.echo(f"  hardware: {hw['major']}.{hw['minor']}, software: {sw['major']}.{sw['minor']}")
    click.echo(f"  storage: {description['storage_bytes']} bytes")
    uid = description["uid"] or "(not read)"
    click.echo(f"  UID: {uid}{' (random UID on)' if description['random_uid'] else ''}")
    if description["anticollision_uid"] is not None:
        click.echo(f"  anticollision UID: {description['anticollision_uid']}")
    originality = description["originality"]
    if originality is None:
        click.echo("  originality: no signature")
    elif originality["verified"]:
        click.echo(f"  originality: verified ({originality['key']})")
    else:
        click.echo("  originality: not verified")
    applications = description["applications"]
    shown = "not listed" if applications is None else " ".join(applications) or "none"
    click.echo(f"  applications: {shown}")
    click.echo(f"  MIE application: {'yes' if description['mie_application'] else 'no'}")
