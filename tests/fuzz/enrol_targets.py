"""Fuzz targets of the enrolment files: the journal (``mie-enrol/1``) and the bulk-enrolment
CSV (see :mod:`tests.fuzz.targets` for the registry)."""

from __future__ import annotations

import datetime as dt

from mie.desfire.journal import (
    JOURNAL_HEADER,
    MAX_JOURNAL_BYTES,
    EntryState,
    Journal,
    Step,
    id_nat_problem,
    incomplete_badges,
    issuer_problem,
    parse_enrolment_csv,
    parse_journal,
)
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Run, Target, scratch

_UID = bytes.fromhex("04a1b2c3d4e5f6")
_AT = dt.datetime(2026, 12, 1, 14, 30, 5, tzinfo=dt.UTC)
_PSI = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _line(row: str, step: str, state: str, uid: str = _UID.hex()) -> str:
    return f"mie-enrol/1,{row},{uid},{step},{state},2026-12-01T14:30:05Z\n"


# --- the journal ---------------------------------------------------------------------------


def _journal_seeds(context: Context) -> list[bytes]:
    full = "".join(_line("17", s.value, st) for s in Step for st in ("intent", "done"))
    half = _line("18", "begin", "intent", "04000000000001") + _line("18", "begin", "done")
    reset = _line("a.b:c_d-1", "application", "reset")
    planned = _line("19", "begin", "intent") + _line("19", "second_factor", "planned")
    header = JOURNAL_HEADER + "\n"
    return [
        (header + full).encode(),
        (header + half + reset).encode(),
        (header + planned + _line("19", "begin", "done") + reset).encode(),
        (header + full + half[:30]).encode(),
        header[:10].encode(),
        b"",
    ]


def _journal_prepare(context: Context) -> Run:
    path = scratch("enrol-journal") / "journal.csv"

    def run(data: bytes) -> None:
        if len(data) > MAX_JOURNAL_BYTES:
            return
        contents = parse_journal(data)
        # A strict parse is canonical: the entries re-encode to the bytes they came from.
        rebuilt = "".join(entry.encode() for _, entry in contents.entries)
        if (
            contents.valid_length
            and (JOURNAL_HEADER + "\n" + rebuilt).encode() != data[: contents.valid_length]
        ):
            raise OracleViolation("journal: re-encoding a strict parse changed the bytes")
        if contents.valid_length + len(contents.torn) != len(data):
            raise OracleViolation("journal: the entries and the torn line are not the file")
        if any(i.state is EntryState.PLANNED for i in incomplete_badges(contents.entries)):
            raise OracleViolation("journal: a planned second factor was taken for progress")
        # Opened, a journal cuts off a torn line and appends a line that parses back.
        path.write_bytes(data)
        with Journal.open(path, clock=lambda: _AT) as journal:
            for _, entry in contents.entries:
                last = journal.last(entry.uid)
                if last is not None and last.state is EntryState.PLANNED:
                    raise OracleViolation("journal: a planned second factor is a badge's last line")
                journal.second_factor_planned(entry.uid)
                if any(e.row != entry.row for e in journal.badges_of_row(entry.row)):
                    raise OracleViolation("journal: a badge of a row has another row")
            journal.record("1", _UID, Step.BEGIN, EntryState.INTENT)
        again = parse_journal(path.read_bytes())
        if again.torn or len(again.entries) != len(contents.entries) + 1:
            raise OracleViolation("journal: a line appended after open does not parse back")

    return run


# --- the bulk CSV --------------------------------------------------------------------------


def _csv_seeds(context: Context) -> list[bytes]:
    return [
        b"row,id_nat,issuer,pin\r\n1,810001234565,CH Exemple,1234\r\n2,"
        + _PSI.encode()
        + b",,\r\n",
        b'\xef\xbb\xbfid_nat,issuer\n810001234565,"CH, site \xc3\xa9"\n',
        b"id_nat\n810001234565\n" + _PSI.encode() + b"\n",
        b"id_nat,pin,row\n810001234565,98765432,x\n",
        b"",
    ]


def _csv_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        rows = parse_enrolment_csv(data)
        names = [r.row for r in rows]
        if len(set(names)) != len(names):
            raise OracleViolation("bulk CSV: two rows with one name were accepted")
        for row in rows:
            if id_nat_problem(row.id_nat) is not None:
                raise OracleViolation("bulk CSV: an id_nat a record refuses was accepted")
            if row.issuer is not None and issuer_problem(row.issuer) is not None:
                raise OracleViolation("bulk CSV: an issuer a record refuses was accepted")
            if "pin=" in repr(row):
                raise OracleViolation("bulk CSV: a PIN is in a row's repr")

    return run


ENROL_TARGETS = [
    Target(
        "enrol-journal",
        "enrolment journal files (parse_journal, Journal.open and append, incomplete badges, "
        "planned second factors, badges of a row)",
        _journal_seeds,
        _journal_prepare,
        max_len=4096,
    ),
    Target(
        "enrol-csv",
        "bulk-enrolment CSV files (parse_enrolment_csv: columns, rows, id_nat, issuer, PIN)",
        _csv_seeds,
        _csv_prepare,
        max_len=4096,
    ),
]
