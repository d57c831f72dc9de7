"""The enrolment journal and the bulk-enrolment CSV (mie.desfire.journal, plan §4.4)."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import uuid
from pathlib import Path

import pytest

from mie.core.errors import ErrorCode
from mie.core.luhn import luhn_valid
from mie.desfire import journal as journal_module
from mie.desfire.journal import (
    JOURNAL_HEADER,
    EnrolmentCsvError,
    EntryState,
    Journal,
    JournalError,
    JournalFormatError,
    Step,
    incomplete_badges,
    parse_enrolment_csv,
    parse_journal,
    read_enrolment_csv,
)

UID_A = bytes.fromhex("04a1b2c3d4e5f6")
UID_B = bytes.fromhex("04000000000001")
AT = dt.datetime(2026, 12, 1, 14, 30, 5, tzinfo=dt.UTC)
PSI = str(uuid.UUID("6f1c2a80-9d3b-4e5f-8a7b-1c2d3e4f5a6b"))


def rpps(n: int) -> str:
    """:return: a Luhn-valid RPPS idNat ``8`` + 11 digits."""
    body = f"{n:010d}"
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    return "8" + body + check


def line(row: str = "17", uid: str = UID_A.hex(), step: str = "picc_key", state: str = "intent",
         at: str = "2026-12-01T14:30:05Z", form: str = "mie-enrol/1") -> str:  # fmt: skip
    return ",".join((form, row, uid, step, state, at)) + "\n"


def clock() -> dt.datetime:
    return AT


# --- the journal ---------------------------------------------------------------------------


def test_a_new_journal_has_its_header_and_each_line_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    with Journal.open(path, clock=clock) as journal:
        journal.record("17", UID_A, Step.BEGIN, EntryState.INTENT)
        journal.record("17", UID_A, Step.BEGIN, EntryState.DONE)
    assert path.read_text() == JOURNAL_HEADER + "\n" + line(step="begin") + line(
        step="begin", state="done"
    )
    assert os.stat(path).st_mode & 0o777 == 0o600
    with Journal.open(path) as again:
        assert [(e.row, e.uid, e.step, e.state, e.at) for e in again.entries] == [
            ("17", UID_A, Step.BEGIN, EntryState.INTENT, AT),
            ("17", UID_A, Step.BEGIN, EntryState.DONE, AT),
        ]


def test_every_line_is_fsynced_before_record_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.csv"
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # What is on disk when fsync runs: the line is already written in full.
        synced.append(len(Path(path).read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with Journal.open(path, clock=clock) as journal:
        header_syncs = len(synced)
        for state in (EntryState.INTENT, EntryState.DONE):
            journal.record("17", UID_A, Step.PICC_KEY, state)
    sizes = synced[header_syncs:]
    assert sizes == [
        len(JOURNAL_HEADER) + 1 + len(line()),
        len(JOURNAL_HEADER) + 1 + len(line()) + len(line(state="done")),
    ]


def test_the_journal_is_opened_for_appending(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.csv") as journal:
        assert journal._fd is not None
        assert fcntl.fcntl(journal._fd, fcntl.F_GETFL) & os.O_APPEND


def test_a_torn_last_line_is_ignored_with_a_warning_and_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mie")
    path = tmp_path / "j.csv"
    path.write_text(JOURNAL_HEADER + "\n" + line() + line(state="done")[:20])
    with Journal.open(path, clock=clock) as journal:
        assert len(journal.entries) == 1
        journal.record("17", UID_A, Step.PICC_KEY, EntryState.DONE)
    assert "torn line" in caplog.text
    assert path.read_text() == JOURNAL_HEADER + "\n" + line() + line(state="done")
    with Journal.open(path) as again:
        assert len(again.entries) == 2


def test_a_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text(JOURNAL_HEADER[:9])
    with Journal.open(path, clock=clock) as journal:
        journal.record("1", UID_A, Step.BEGIN, EntryState.INTENT)
    assert path.read_text() == JOURNAL_HEADER + "\n" + line(row="1", step="begin")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (line(form="mie-enrol/2"), "format"),
        (line(row="a b"), "row"),
        (line(row=""), "row"),
        (line(row="x" * 33), "row"),
        (line(uid="04A1B2C3D4E5F6"), "uid"),
        (line(uid="04a1b2c3d4e5"), "uid"),
        (line(step="picc"), "step"),
        (line(state="started"), "state"),
        (line(step="picc_key", state="planned"), "Only the second_factor step is planned"),
        (line(at="2026-12-01 14:30:05Z"), "time"),
        (line(at="2026-02-30T14:30:05Z"), "not a date"),
        (line()[:-1] + ",x\n", "7 fields"),
        ("mie-enrol/1,17\n", "2 fields"),
        ("\n", "1 fields"),
        (line().replace("17", "1\u00e9"), "ASCII"),
        ("mie-enrol/1," + "1" * 200 + "\n", "longer"),
    ],
)
def test_a_bad_line_is_a_typed_error_naming_it(tmp_path: Path, bad: str, problem: str) -> None:
    path = tmp_path / "j.csv"
    path.write_bytes((JOURNAL_HEADER + "\n" + line() + bad + line(state="done")).encode())
    with pytest.raises(JournalFormatError, match=problem) as caught:
        Journal.open(path)
    assert caught.value.line == 3
    assert "line 3" in str(caught.value)
    assert caught.value.code is ErrorCode.MALFORMED
    # A bad last complete line is not a torn line: it is refused too.
    path.write_bytes((JOURNAL_HEADER + "\n" + bad).encode())
    with pytest.raises(JournalFormatError):
        Journal.open(path)


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text(line())
    with pytest.raises(JournalFormatError, match="header") as caught:
        Journal.open(path)
    assert caught.value.line == 1
    path.write_text("row,id_nat")
    with pytest.raises(JournalFormatError, match="header"):
        Journal.open(path)


def test_the_journal_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.csv"
    path.write_text(JOURNAL_HEADER + "\n" + 3 * line())
    monkeypatch.setattr(journal_module, "MAX_JOURNAL_BYTES", len(path.read_bytes()) - 1)
    with pytest.raises(JournalFormatError, match="larger than"):
        Journal.open(path)


def test_a_second_run_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    with Journal.open(path):
        with pytest.raises(JournalError, match="in use"):
            Journal.open(path)
    with Journal.open(path):
        pass


def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(JournalError, match="not a regular file"):
        Journal.open(fifo)
    with pytest.raises(JournalError, match="Cannot open"):
        Journal.open(tmp_path)


def test_a_closed_journal_refuses_to_record(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.csv")
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.record("1", UID_A, Step.BEGIN, EntryState.INTENT)


def test_incomplete_badges_name_the_step_to_run_next(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.csv", clock=clock) as journal:
        for step in (Step.BEGIN, Step.PICC_KEY, Step.APPLICATION):
            journal.record("17", UID_A, step, EntryState.INTENT)
            journal.record("17", UID_A, step, EntryState.DONE)
        journal.record("18", UID_B, Step.BEGIN, EntryState.INTENT)
        first = journal.incomplete()
        assert [(i.row, i.uid, i.step, i.state) for i in first] == [
            ("17", UID_A, Step.APP_KEYS, EntryState.DONE),
            ("18", UID_B, Step.BEGIN, EntryState.INTENT),
        ]
        assert first[0].describe() == "row 17 (04a1b2c3d4e5f6) incomplete at app_keys"
        journal.record("17", UID_A, Step.APPLICATION, EntryState.RESET)
        assert journal.incomplete()[1].step is Step.APPLICATION
        for step in Step:
            journal.record("18", UID_B, step, EntryState.INTENT)
            journal.record("18", UID_B, step, EntryState.DONE)
        assert [i.uid for i in journal.incomplete()] == [UID_A]
        assert journal.completed_rows() == {"18"}
        assert len(journal.history(UID_B)) == 1 + 2 * len(Step)


def test_a_planned_second_factor_is_not_progress_and_a_reset_ends_it(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    with Journal.open(path, clock=clock) as journal:
        journal.record("17", UID_A, Step.BEGIN, EntryState.INTENT)
        journal.record("17", UID_A, Step.SECOND_FACTOR, EntryState.PLANNED)
        assert journal.second_factor_planned(UID_A) and not journal.second_factor_planned(UID_B)
        # The plan is not the badge's last line: the badge is incomplete at BEGIN.
        last = journal.last(UID_A)
        assert last is not None and (last.step, last.state) == (Step.BEGIN, EntryState.INTENT)
        (pending,) = journal.incomplete()
        assert (pending.step, pending.state, pending.line) == (Step.BEGIN, EntryState.INTENT, 2)
        journal.record("17", UID_A, Step.BEGIN, EntryState.DONE)
        journal.record("17", UID_A, Step.PICC_KEY, EntryState.INTENT)
        journal.record("17", UID_A, Step.PICC_KEY, EntryState.DONE)
        assert journal.second_factor_planned(UID_A)
        journal.record("17", UID_A, Step.APPLICATION, EntryState.RESET)
        assert not journal.second_factor_planned(UID_A)
        with pytest.raises(ValueError, match="Only the second_factor step"):
            journal.record("17", UID_A, Step.RECORD, EntryState.PLANNED)
    text = path.read_text()
    assert f"mie-enrol/1,17,{UID_A.hex()},second_factor,planned,2026-12-01T14:30:05Z\n" in text
    # Read back as written.
    with Journal.open(path) as journal:
        assert [e.state for e in journal.entries].count(EntryState.PLANNED) == 1
        assert journal.incomplete()[0].step is Step.APPLICATION


def test_a_journal_written_before_the_planned_line_reads_as_it_did(tmp_path: Path) -> None:
    # A mie-enrol/1 journal of the first version: its second_factor,intent is the plan.
    path = tmp_path / "j.csv"
    lines = [line(step="begin", state="intent"), line(step="begin", state="done")]
    lines += [line(step="second_factor", state="intent")]
    path.write_text(JOURNAL_HEADER + "\n" + "".join(lines))
    with Journal.open(path) as journal:
        assert journal.second_factor_planned(UID_A)
        assert journal.incomplete()[0].step is Step.SECOND_FACTOR
    path.write_text(JOURNAL_HEADER + "\n" + "".join(lines[:2]))
    with Journal.open(path) as journal:
        assert not journal.second_factor_planned(UID_A)


def test_the_badges_of_a_row_are_those_whose_last_line_names_it(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.csv", clock=clock) as journal:
        journal.record("17", UID_A, Step.BEGIN, EntryState.INTENT)
        journal.record("17", UID_B, Step.BEGIN, EntryState.INTENT)
        assert [e.uid for e in journal.badges_of_row("17")] == [UID_A, UID_B]
        # A reset badge taken for another row leaves its first row.
        journal.record("17", UID_A, Step.PICC_KEY, EntryState.RESET)
        journal.record("18", UID_A, Step.APPLICATION, EntryState.INTENT)
        journal.record("18", UID_A, Step.SECOND_FACTOR, EntryState.PLANNED)
        assert [e.uid for e in journal.badges_of_row("17")] == [UID_B]
        ((entry),) = journal.badges_of_row("18")
        assert (entry.uid, entry.step, entry.state) == (UID_A, Step.APPLICATION, EntryState.INTENT)
        assert journal.badges_of_row("19") == ()


def test_parse_journal_of_nothing_is_empty() -> None:
    assert parse_journal(b"").entries == ()
    assert incomplete_badges(()) == ()


# --- the bulk CSV --------------------------------------------------------------------------


def test_a_bulk_csv_is_read_with_its_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "badges.csv"
    path.write_bytes(
        (
            "\ufeffid_nat,pin,issuer,row\r\n"
            f"{rpps(1)},1234,,a-1\r\n"
            f'{PSI},,"CH Exemple, site B",\r\n'
        ).encode()
    )
    rows = read_enrolment_csv(path)
    assert [(r.row, r.line, r.id_nat, r.issuer, r.pin) for r in rows] == [
        ("a-1", 2, rpps(1), None, "1234"),
        ("3", 3, PSI, "CH Exemple, site B", None),
    ]
    assert "1234" not in repr(rows)


def test_the_id_nat_column_alone_numbers_rows_by_line() -> None:
    rows = parse_enrolment_csv(f"id_nat\n{rpps(1)}\n{rpps(2)}\n".encode())
    assert [(r.row, r.id_nat) for r in rows] == [("2", rpps(1)), ("3", rpps(2))]


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ("", 1, None, "no header"),
        ("id_nat,name\n", 1, "name", "unknown column"),
        ("id_nat,pin,pin\n", 1, "pin", "twice"),
        ("row,pin\n", 1, "id_nat", "no id_nat"),
        (f"row,id_nat\n1,{rpps(1)}\n1,{rpps(2)}\n", 3, "row", "also on line 2"),
        (f"row,id_nat\n3,{rpps(1)}\n,{rpps(2)}\n", 3, "row", "row 3 is also on line 2"),
        (f"id_nat\n{rpps(1)}\n\n{rpps(2)}\n", 3, None, "empty line"),
        (f"id_nat,pin\n{rpps(1)}\n", 2, None, "1 cells"),
        (f"id_nat\n{rpps(1)},x\n", 2, None, "2 cells"),
        ("id_nat\n810001234566\n", 2, "id_nat", "RPPS"),
        ("id_nat\n0123456789\n", 2, "id_nat", "lower-case PSI"),
        (f"id_nat\n{PSI.upper()}\n", 2, "id_nat", "lower-case PSI"),
        ("id_nat\n\n", 2, None, "empty line"),
        ('id_nat\n""\n', 2, "id_nat", "empty"),
        (f"id_nat,issuer\n{rpps(1)},{'x' * 31}\n", 2, "issuer", "31 bytes"),
        (f"id_nat,issuer\n{rpps(1)},a\u0007b\n", 2, "issuer", "control"),
        (f"row,id_nat\nsite 1,{rpps(1)}\n", 2, "row", "row is not"),
        (f"id_nat,pin\n{rpps(1)},12a4\n", 2, "pin", "digits"),
        (f"id_nat,pin\n{rpps(1)},123\n", 2, "pin", "4 to 8"),
        (f'id_nat\n"{rpps(1)}\n', 2, None, "not CSV"),
        (f'id_nat\n{rpps(1)}"x\n', 2, "id_nat", "RPPS"),
        (f"id_nat\n{'8' * 300}\n", 2, "id_nat", "longer than 256"),
        (f"id_nat\n{rpps(1)}\x00\n", None, None, "NUL"),
    ],
)
def test_a_bad_bulk_csv_is_refused_naming_line_and_column(
    text: str, line: int | None, column: str | None, problem: str
) -> None:
    with pytest.raises(EnrolmentCsvError, match=problem) as caught:
        parse_enrolment_csv(text.encode())
    assert (caught.value.line, caught.value.column) == (line, column)
    assert caught.value.code is ErrorCode.MALFORMED


def test_a_refused_pin_is_never_in_the_message() -> None:
    with pytest.raises(EnrolmentCsvError) as caught:
        parse_enrolment_csv(f"id_nat,pin\n{rpps(1)},98a76\n".encode())
    assert "98a76" not in str(caught.value)


def test_the_bulk_csv_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnrolmentCsvError, match="UTF-8"):
        parse_enrolment_csv(b"id_nat\n\xff\n")
    monkeypatch.setattr(journal_module, "MAX_CSV_BYTES", 20)
    with pytest.raises(EnrolmentCsvError, match="larger than 20"):
        parse_enrolment_csv(f"id_nat\n{rpps(1)}\n{rpps(2)}\n".encode())
    monkeypatch.setattr(journal_module, "MAX_CSV_BYTES", 4096)
    monkeypatch.setattr(journal_module, "MAX_CSV_ROWS", 2)
    with pytest.raises(EnrolmentCsvError, match="more than 2 rows") as caught:
        parse_enrolment_csv(f"id_nat\n{rpps(1)}\n{rpps(2)}\n{rpps(3)}\n".encode())
    assert caught.value.line == 4
    with pytest.raises(EnrolmentCsvError, match="Cannot read"):
        read_enrolment_csv(tmp_path / "missing.csv")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(EnrolmentCsvError, match="not a regular file"):
        read_enrolment_csv(tmp_path / "fifo")


def test_a_year_below_1000_keeps_its_four_digits() -> None:
    # Found by the enrol-journal fuzz target: strftime's %Y wrote 262 for 0262, so the line
    # read back was not the line written.
    data = (JOURNAL_HEADER + "\n" + line(at="0262-12-01T14:30:05Z")).encode()
    ((_, entry),) = parse_journal(data).entries
    assert entry.encode() == line(at="0262-12-01T14:30:05Z")
