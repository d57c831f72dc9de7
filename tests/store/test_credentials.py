"""FIDO2 credentials on every backend (SQLite, PostgreSQL, memory): registration, look-up,
the signature counter's compare-and-set (plan D9), suspension, deletion, listing by idNat."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mie.core.errors import ErrorCode, MieError
from mie.result import ErrorInfo
from mie.store.base import CredentialRecord, Store
from mie.store.errors import (
    AlreadyRegisteredError,
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
    StoreCorruptError,
    StoreError,
    StoreInputError,
)
from mie.store.memory import MemoryStore
from tests.store.targets import StoreTarget

RP = "iam.chu-exemple.fr"
ID_NAT = "810001234565"
OTHER_ID_NAT = "4f0b7c1e-5d2a-4c8e-9a3b-6e1f2d7c8b90"
CRED = bytes(range(1, 33))
KEY = bytes.fromhex("a501020326200121582000") + bytes(32) + bytes.fromhex("225820") + bytes(32)
RECORD = CredentialRecord(
    rp_id=RP,
    credential_id=CRED,
    user_handle=bytes(range(16)),
    public_key=KEY,
    alg=-7,
    aaguid=bytes.fromhex("6d69652d544553542d4649444f320001"),
    sign_count=5,
    backup_eligible=False,
    attestation="packed/basic",
    certification="FIDO_CERTIFIED_L1",
    id_nat=ID_NAT,
    test=True,
    # Exact to the microsecond: PostgreSQL keeps times to the microsecond.
    created_at=1_780_000_000.25,
)
OLD_SQLITE_SCHEMA = (
    "CREATE TABLE mie_second_factor (badge TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,"
    " reserved INTEGER NOT NULL, cleared INTEGER NOT NULL, generation INTEGER NOT NULL)",
    "CREATE TABLE mie_nonce (nonce TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
)
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def cstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store on each backend, the in-memory one included."""
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = StoreTarget("sqlite", str(tmp_path / "state.db")).open()
    else:
        opened = StoreTarget("postgres", request.getfixturevalue("postgres_database")).open()
    with opened:
        yield opened


def record(**changes: Any) -> CredentialRecord:
    return dataclasses.replace(RECORD, **changes)


def test_a_registered_credential_reads_back_field_for_field(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    assert cstore.get_credential(RP, CRED) == RECORD
    other = record(
        credential_id=b"\xff",
        certification=None,
        backup_eligible=True,
        test=False,
        sign_count=0,
        alg=-8,
        id_nat=OTHER_ID_NAT,
        last_used_at=1_780_000_100.5,
    )
    cstore.put_credential(other)
    assert cstore.get_credential(RP, b"\xff") == other


def test_a_credential_registered_twice_is_refused_and_left_as_it_was(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    with pytest.raises(AlreadyRegisteredError) as caught:
        cstore.put_credential(record(sign_count=9, id_nat=OTHER_ID_NAT))
    assert caught.value.code is ErrorCode.ALREADY_REGISTERED
    assert cstore.get_credential(RP, CRED) == RECORD
    # The same credential id under another relying party is another credential.
    cstore.put_credential(record(rp_id="other.example"))
    assert cstore.get_credential("other.example", CRED).rp_id == "other.example"


def test_an_unknown_credential_is_credential_unknown(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    for rp_id, credential_id in ((RP, CRED[:-1]), ("other.example", CRED)):
        with pytest.raises(CredentialUnknownError) as caught:
            cstore.get_credential(rp_id, credential_id)
        assert caught.value.code is ErrorCode.CREDENTIAL_UNKNOWN
        with pytest.raises(CredentialUnknownError):
            cstore.advance_counter(rp_id, credential_id, 6, allow_zero=False)
        with pytest.raises(CredentialUnknownError):
            cstore.suspend_credential(rp_id, credential_id, "revoked")
        with pytest.raises(CredentialUnknownError):
            cstore.delete_credential(rp_id, credential_id)


BAD_RECORDS = {
    "rp_id upper case": {"rp_id": "IAM.example"},
    "rp_id empty": {"rp_id": ""},
    "rp_id too long": {"rp_id": ("a" * 63 + ".") * 4 + "ab"},
    "rp_id empty label": {"rp_id": "a..example"},
    "rp_id hyphen first": {"rp_id": "-a.example"},
    "rp_id with a port": {"rp_id": "a.example:443"},
    "rp_id not a str": {"rp_id": b"a.example"},
    "credential id empty": {"credential_id": b""},
    "credential id too long": {"credential_id": bytes(1024)},
    "credential id a str": {"credential_id": "0102"},
    "user handle empty": {"user_handle": b""},
    "user handle too long": {"user_handle": bytes(65)},
    "public key empty": {"public_key": b""},
    "public key too long": {"public_key": bytes(2049)},
    "alg a bool": {"alg": True},
    "alg too large": {"alg": 2**31},
    "aaguid short": {"aaguid": bytes(15)},
    "aaguid long": {"aaguid": bytes(17)},
    "counter negative": {"sign_count": -1},
    "counter too large": {"sign_count": 2**32},
    "counter a bool": {"sign_count": True},
    "backup eligible an int": {"backup_eligible": 1},
    "test an int": {"test": 0},
    "attestation empty": {"attestation": ""},
    "attestation too long": {"attestation": "a" * 65},
    "attestation with a space": {"attestation": "packed basic"},
    "certification empty": {"certification": ""},
    "id_nat not an idNat": {"id_nat": "12345"},
    "id_nat too long": {"id_nat": "8" * 65},
    "created_at NaN": {"created_at": float("nan")},
    "created_at negative": {"created_at": -1.0},
    "last_used_at infinite": {"last_used_at": float("inf")},
    "suspended unknown": {"suspended": "lost"},
}


@pytest.mark.parametrize("changes", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_a_field_out_of_its_bound_is_refused_before_any_write(
    cstore: Store, changes: dict[str, Any]
) -> None:
    with pytest.raises(StoreInputError) as caught:
        cstore.put_credential(record(**changes))
    assert caught.value.code is ErrorCode.MALFORMED
    assert cstore.credentials_of(ID_NAT) == ()


def test_bounds_at_their_limits_are_accepted(cstore: Store) -> None:
    widest = record(
        rp_id=("a" * 63 + ".") * 3 + "a" * 61,
        credential_id=bytes(1023),
        user_handle=bytes(64),
        public_key=bytes(2048),
        alg=-(2**31),
        sign_count=2**32 - 1,
        attestation="a" * 64,
    )
    cstore.put_credential(widest)
    assert cstore.get_credential(widest.rp_id, bytes(1023)) == widest
    with pytest.raises(CloneSuspectedError):
        cstore.advance_counter(widest.rp_id, bytes(1023), 2**32 - 1, allow_zero=False)


@pytest.mark.parametrize(
    "arguments",
    [("IAM", CRED, 6), (RP, b"", 6), (RP, "01", 6), (RP, CRED, -1), (RP, CRED, 2**32)],
    ids=["rp_id", "empty id", "str id", "negative", "too large"],
)
def test_advance_counter_checks_its_arguments(
    cstore: Store, arguments: tuple[Any, Any, Any]
) -> None:
    cstore.put_credential(RECORD)
    with pytest.raises(StoreInputError):
        cstore.advance_counter(*arguments, allow_zero=False)
    assert cstore.get_credential(RP, CRED) == RECORD


def test_a_higher_counter_advances_and_records_the_use(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    before = time.time() - 5
    advanced = cstore.advance_counter(RP, CRED, 6, allow_zero=False)
    assert advanced.sign_count == 6
    assert advanced.last_used_at is not None and advanced.last_used_at >= before
    assert advanced == dataclasses.replace(RECORD, sign_count=6, last_used_at=advanced.last_used_at)
    assert cstore.get_credential(RP, CRED) == advanced
    # A jump is fine: only "above the stored one" matters.
    assert cstore.advance_counter(RP, CRED, 1000, allow_zero=False).sign_count == 1000


def test_an_equal_counter_is_refused_without_suspending(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    cstore.advance_counter(RP, CRED, 6, allow_zero=True)
    with pytest.raises(CloneSuspectedError) as caught:
        cstore.advance_counter(RP, CRED, 6, allow_zero=True)
    assert caught.value.code is ErrorCode.SUSPECTED_CLONE
    assert caught.value.suspended is None
    assert "6 already seen" in str(caught.value)
    assert cstore.get_credential(RP, CRED).suspended is None
    # The genuine key's next assertion is accepted: a race or a replay locks nobody out.
    assert cstore.advance_counter(RP, CRED, 7, allow_zero=False).sign_count == 7


def test_lower_counter_suspends(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    with pytest.raises(CloneSuspectedError) as caught:
        cstore.advance_counter(RP, CRED, 4, allow_zero=True)
    assert caught.value.suspended == "clone-suspected"
    assert "went back" in str(caught.value)
    stored = cstore.get_credential(RP, CRED)
    assert (stored.suspended, stored.sign_count) == ("clone-suspected", 5)
    assert stored.last_used_at is None
    # Every later assertion is refused, the genuine key's included.
    with pytest.raises(CloneSuspectedError) as later:
        cstore.advance_counter(RP, CRED, 6, allow_zero=False)
    assert later.value.suspended == "clone-suspected"
    assert cstore.get_credential(RP, CRED).sign_count == 5


def test_zero_after_zero_needs_allow_zero(cstore: Store) -> None:
    cstore.put_credential(record(sign_count=0))
    with pytest.raises(CounterUnsupportedError) as caught:
        cstore.advance_counter(RP, CRED, 0, allow_zero=False)
    assert caught.value.code is ErrorCode.COUNTER_UNSUPPORTED
    assert cstore.get_credential(RP, CRED).last_used_at is None
    accepted = cstore.advance_counter(RP, CRED, 0, allow_zero=True)
    assert (accepted.sign_count, accepted.suspended) == (0, None)
    assert accepted.last_used_at is not None
    assert cstore.advance_counter(RP, CRED, 0, allow_zero=True).sign_count == 0


def test_a_counter_that_starts_counting_then_returns_to_zero_suspends(cstore: Store) -> None:
    cstore.put_credential(record(sign_count=0))
    assert cstore.advance_counter(RP, CRED, 1, allow_zero=False).sign_count == 1
    with pytest.raises(CloneSuspectedError):
        cstore.advance_counter(RP, CRED, 0, allow_zero=True)
    assert cstore.get_credential(RP, CRED).suspended == "clone-suspected"


def test_a_suspended_credential_is_refused_and_revocation_is_final(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    cstore.suspend_credential(RP, CRED, "revoked")
    with pytest.raises(CloneSuspectedError) as caught:
        cstore.advance_counter(RP, CRED, 6, allow_zero=False)
    assert caught.value.suspended == "revoked"
    # A clone suspicion never replaces a revocation, and a counter going back keeps it too.
    cstore.suspend_credential(RP, CRED, "clone-suspected")
    with pytest.raises(CloneSuspectedError):
        cstore.advance_counter(RP, CRED, 1, allow_zero=False)
    assert cstore.get_credential(RP, CRED).suspended == "revoked"
    with pytest.raises(StoreInputError):
        cstore.suspend_credential(RP, CRED, "lost")


def test_a_revocation_replaces_a_clone_suspicion(cstore: Store) -> None:
    cstore.put_credential(record(suspended="clone-suspected"))
    cstore.suspend_credential(RP, CRED, "revoked")
    assert cstore.get_credential(RP, CRED).suspended == "revoked"


def test_a_deleted_credential_is_unknown(cstore: Store) -> None:
    cstore.put_credential(RECORD)
    cstore.delete_credential(RP, CRED)
    with pytest.raises(CredentialUnknownError):
        cstore.get_credential(RP, CRED)
    with pytest.raises(CredentialUnknownError):
        cstore.delete_credential(RP, CRED)
    # It can be registered again, from its counter at registration.
    cstore.put_credential(RECORD)
    assert cstore.get_credential(RP, CRED) == RECORD


def test_credentials_are_listed_by_id_nat_oldest_first(cstore: Store) -> None:
    newer = record(credential_id=b"\x02", created_at=RECORD.created_at + 10)
    elsewhere = record(rp_id="other.example", credential_id=b"\x03", created_at=1.5)
    someone_else = record(credential_id=b"\x04", id_nat=OTHER_ID_NAT)
    for each in (newer, RECORD, elsewhere, someone_else):
        cstore.put_credential(each)
    assert cstore.credentials_of(ID_NAT) == (elsewhere, RECORD, newer)
    assert cstore.credentials_of(ID_NAT, RP) == (RECORD, newer)
    assert cstore.credentials_of(ID_NAT, "none.example") == ()
    assert cstore.credentials_of(OTHER_ID_NAT) == (someone_else,)
    assert cstore.credentials_of("810100099877") == ()
    with pytest.raises(StoreInputError):
        cstore.credentials_of("not an id")
    with pytest.raises(StoreInputError):
        cstore.credentials_of(ID_NAT, "Not A Host")


def test_the_credential_api_leaves_the_second_factor_and_nonces_alone(cstore: Store) -> None:
    cstore.put_secret("b1", HASH)
    cstore.issue_nonce(bytes(16), 60)
    cstore.put_credential(RECORD)
    cstore.advance_counter(RP, CRED, 6, allow_zero=False)
    assert cstore.secret_status("b1").failures == 0
    cstore.consume_nonce(bytes(16))


def test_the_repr_leaves_out_the_key_and_the_user_handle() -> None:
    shown = repr(record(user_handle=b"USERHANDLE-SECRET", public_key=b"PUBLIC-KEY-BYTES"))
    assert "USERHANDLE" not in shown and "PUBLIC-KEY" not in shown
    assert RP in shown and "sign_count=5" in shown


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (CredentialUnknownError, ErrorCode.CREDENTIAL_UNKNOWN),
        (AlreadyRegisteredError, ErrorCode.ALREADY_REGISTERED),
        (CloneSuspectedError, ErrorCode.SUSPECTED_CLONE),
        (CounterUnsupportedError, ErrorCode.COUNTER_UNSUPPORTED),
    ],
)
def test_the_store_outcomes_carry_their_contract_codes(
    kind: type[MieError], code: ErrorCode
) -> None:
    assert kind.code is code
    assert ErrorInfo.from_exception(kind("Some problem")).code is code
    assert not issubclass(kind, StoreError)


def test_a_store_written_before_credentials_refuses_them_as_a_store_error() -> None:
    class SecondFactorOnly(MemoryStore):
        pass

    # The credential methods have defaults, so an older Store subclass still instantiates.
    for name in ("put_credential", "get_credential", "advance_counter", "credentials_of"):
        setattr(SecondFactorOnly, name, getattr(Store, name))
    old = SecondFactorOnly()
    with pytest.raises(StoreError, match="keeps no FIDO2 credentials"):
        old.put_credential(RECORD)
    with pytest.raises(StoreError):
        old.advance_counter(RP, CRED, 6, allow_zero=False)


def test_an_sqlite_file_of_the_older_schema_gains_the_credential_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    try:
        for statement in OLD_SQLITE_SCHEMA:
            old.execute(statement)
        old.execute("INSERT INTO mie_second_factor VALUES ('b1', ?, 3, 1, 7)", (HASH,))
        old.commit()
    finally:
        old.close()
    with StoreTarget("sqlite", str(path)).open() as store:
        assert store.secret_status("b1").failures == 2
        store.put_credential(RECORD)
    # Opening again (the schema step is idempotent) keeps everything.
    with StoreTarget("sqlite", str(path)).open() as store:
        assert store.get_credential(RP, CRED) == RECORD
        assert store.secret_status("b1").generation == 7


def test_a_postgresql_database_of_the_older_schema_gains_the_credential_table(
    postgres_database: str,
) -> None:
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE mie_second_factor (badge text PRIMARY KEY, secret_hash text NOT NULL,"
            " reserved bigint NOT NULL, cleared bigint NOT NULL, generation bigint NOT NULL)"
        )
        admin.execute("INSERT INTO mie_second_factor VALUES ('b1', %s, 3, 1, 7)", (HASH,))
    target = StoreTarget("postgres", postgres_database)
    with target.open() as store:
        assert store.secret_status("b1").failures == 2
        store.put_credential(RECORD)
    with target.open() as store:
        assert store.get_credential(RP, CRED) == RECORD


@pytest.mark.parametrize(
    ("change", "read"),
    [
        ("alg = 'x'", "both"),
        ("test = 2", "both"),
        ("user_handle = 'text'", "both"),
        ("aaguid = x'00'", "both"),
        ("suspended = 'lost'", "both"),
        ("id_nat = 'nobody'", "get"),
        ("credential_id = 'zz'", "list"),
    ],
)
def test_an_sqlite_row_not_written_by_mie_is_store_corrupt(
    tmp_path: Path, change: str, read: str
) -> None:
    with StoreTarget("sqlite", str(tmp_path / "state.db")).open() as store:
        store.put_credential(RECORD)
        raw = sqlite3.connect(tmp_path / "state.db")
        try:
            raw.execute("PRAGMA ignore_check_constraints = ON")
            raw.execute(f"UPDATE mie_fido_credential SET {change}")  # noqa: S608
            raw.commit()
        finally:
            raw.close()
        if read != "list":
            with pytest.raises(StoreCorruptError):
                store.get_credential(RP, CRED)
        if read != "get":
            with pytest.raises(StoreCorruptError):
                store.credentials_of(ID_NAT)


def test_the_database_refuses_a_counter_out_of_range_written_around_mie(tmp_path: Path) -> None:
    with StoreTarget("sqlite", str(tmp_path / "state.db")).open() as store:
        store.put_credential(RECORD)
    raw = sqlite3.connect(tmp_path / "state.db")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE mie_fido_credential SET sign_count = 4294967296")
    finally:
        raw.close()


def _interface_tests() -> list[Any]:
    """:return: the second-factor and nonce tests of the shared backends that take a store and
    nothing else, so the in-memory store is held to the same interface."""
    import inspect

    import tests.store.test_nonces
    import tests.store.test_store

    found = []
    for module in (tests.store.test_store, tests.store.test_nonces):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            parameters = list(inspect.signature(function).parameters)
            where = f"{module.__name__.split('.')[-1]}.{name}"
            if not name.startswith("test_") or parameters[:1] != ["store"]:
                continue
            marks = getattr(function, "pytestmark", [])
            if parameters == ["store"] and not marks:
                found.append(pytest.param(function, (), id=where))
            elif len(parameters) == 2 and [m.name for m in marks] == ["parametrize"]:
                # One parametrised argument besides the store: each of its values.
                argname, values = marks[0].args[:2]
                if argname == parameters[1]:
                    found += [
                        pytest.param(function, (value,), id=f"{where}[{i}]")
                        for i, value in enumerate(values)
                    ]
    return found


INTERFACE_TESTS = _interface_tests()


def test_the_memory_store_is_held_to_the_shared_interface_tests() -> None:
    # A guard that the collection above found the tests (it filters by signature).
    assert len(INTERFACE_TESTS) >= 40


@pytest.mark.parametrize(("check", "arguments"), INTERFACE_TESTS)
def test_the_memory_store_passes_the_second_factor_and_nonce_tests(
    check: Any, arguments: tuple[Any, ...]
) -> None:
    with MemoryStore() as store:
        check(store, *arguments)
