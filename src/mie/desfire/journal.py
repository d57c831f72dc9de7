"""The enrolment journal and the bulk-enrolment CSV (issue 9 plan §4.4).

The **journal** is what makes an enrolment resumable: before each step the enroller writes an
``intent`` line, after it a ``done`` line, each one flushed and fsynced before the step (or the
next step) starts, so after a crash, a power cut or a badge pulled from the reader the journal
says which badge was left where::

    format,row,uid,step,state,at
    mie-enrol/1,17,04a1b2c3d4e5f6,picc_key,intent,2026-12-01T14:30:05Z
    mie-enrol/1,17,04a1b2c3d4e5f6,picc_key,done,2026-12-01T14:30:05Z

``row`` names the CSV row (1 to 32 of ``A-Z a-z 0-9 . _ : -``), ``uid`` is the badge's real
UID (7 bytes, lower-case hex), ``step`` a :class:`Step`, ``state`` one of :class:`EntryState`,
``at`` the time in UTC. A badge whose last line is not ``verified,done`` is *incomplete*
(:meth:`Journal.incomplete`). The file is opened ``O_APPEND`` and locked against a second run;
a torn last line (no final newline: the process died while writing it, so the step it
announced never started) is cut off with a warning; any other line that is not of the format
raises :class:`JournalFormatError` naming the line.

One line is not a step's progress: ``second_factor,planned``, written when a run is given a PIN
for the badge (at ``BEGIN``, or when a resumed run brings one), says that the badge is to have a
second factor, so that a later run without the PIN does not finish it possession-only. It never
holds the PIN. It is left out of a badge's *last line* (:meth:`Journal.last`); a ``reset`` line
ends the plan. Journals written before this line existed read as they did (``mie-enrol/1``
unchanged; a version that does not know the state refuses the line, naming it).

The **bulk CSV** (``mie desfire enroll --csv``) is UTF-8 with a header; its columns are
``row`` (optional: else the line number), ``id_nat`` (required), ``issuer`` and ``pin``
(optional). :func:`parse_enrolment_csv` refuses unknown or repeated columns, repeated rows and
anything out of range, naming the line and the column, never a PIN.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import errno
import fcntl
import io
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from mie.core.errors import ErrorCode, MieError
from mie.core.files import NotARegularInputError, fsync_directory, read_regular_file, write_all

if TYPE_CHECKING:
    from mie.core.pin import PinRule

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = "mie-enrol/1"
JOURNAL_HEADER = "format,row,uid,step,state,at"
MAX_JOURNAL_BYTES = 32 * 1024 * 1024
"""Largest journal read: about 25,000 badges of 16 lines each."""
MAX_JOURNAL_LINE = 128
"""Longest journal line (a real one has at most 84 characters)."""
MAX_CSV_BYTES = 4 * 1024 * 1024
"""Largest bulk-enrolment CSV read."""
MAX_CSV_ROWS = 100_000
MAX_CSV_FIELD = 256
"""Longest CSV cell, in characters."""
CSV_COLUMNS = ("row", "id_nat", "issuer", "pin")
UID_SIZE = 7
_MAX_ISSUER_BYTES = 30
_ROW = re.compile(r"[A-Za-z0-9._:-]{1,32}")
_UID = re.compile(r"[0-9a-f]{14}")
_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

ClockFn = Callable[[], dt.datetime]


class Step(enum.Enum):
    """The steps of an enrolment, in the order they run (plan §4.2)."""

    BEGIN = "begin"
    PICC_KEY = "picc_key"
    APPLICATION = "application"
    APP_KEYS = "app_keys"
    RECORD = "record"
    SECOND_FACTOR = "second_factor"
    RANDOM_UID = "random_uid"
    VERIFIED = "verified"

    @property
    def index(self) -> int:
        """:return: its position in the enrolment (``BEGIN`` is 0)."""
        return _STEP_ORDER.index(self)

    def next(self) -> Step | None:
        """:return: the step after this one, ``None`` after ``VERIFIED``."""
        position = self.index + 1
        return _STEP_ORDER[position] if position < len(_STEP_ORDER) else None


_STEP_ORDER: tuple[Step, ...] = tuple(Step)
_STEPS = {s.value: s for s in Step}


class EntryState(enum.Enum):
    """What a journal line says about its step."""

    INTENT = "intent"
    """The step is about to run (its effect may or may not be on the badge)."""
    DONE = "done"
    """The step ran to the end."""
    RESET = "reset"
    """The badge was reset to just before this step (``--reset-incomplete``)."""
    PLANNED = "planned"
    """``second_factor`` only: a PIN was given for the badge, so its enrolment needs one (not
    progress: left out of a badge's last line)."""


_STATES = {s.value: s for s in EntryState}


class JournalError(MieError):
    """The journal cannot be used: unreadable, too large, not a regular file, or in use by
    another enrolment run. The message names the file."""

    code = ErrorCode.USAGE


class JournalFormatError(JournalError, ValueError):
    """A journal line that is not of the format (other than a torn last line).

    :param message: one line naming the file and the line.
    :param line: the line number (1 for the header), or ``None`` for the file as a whole.
    """

    code = ErrorCode.MALFORMED

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


class EnrolmentCsvError(MieError, ValueError):
    """A bulk-enrolment CSV that is not of the format: unreadable, too large, not UTF-8, no or
    a bad header, an unknown or repeated column, a repeated row, a cell out of range.

    :param message: one line naming the file, the line and the column (never a PIN).
    :param line: the line number (1 for the header), or ``None`` for the file as a whole.
    :param column: the column, if one is at fault.
    """

    code = ErrorCode.MALFORMED

    def __init__(self, message: str, line: int | None = None, column: str | None = None) -> None:
        self.line = line
        self.column = column
        super().__init__(message)


# --- the journal ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One journal line.

    :param row: the CSV row it is about.
    :param uid: the badge's real UID (7 bytes).
    :param step: the step.
    :param state: intent, done or reset.
    :param at: when it was written (UTC, to the second).
    """

    row: str
    uid: bytes
    step: Step
    state: EntryState
    at: dt.datetime

    def __post_init__(self) -> None:
        check_row(self.row)
        if not isinstance(self.uid, bytes) or len(self.uid) != UID_SIZE:
            raise ValueError(f"A journal UID is {UID_SIZE} bytes")
        if self.at.tzinfo is None:
            raise ValueError("A journal time has a time zone")
        if self.state is EntryState.PLANNED and self.step is not Step.SECOND_FACTOR:
            raise ValueError("Only the second_factor step is planned")

    def encode(self) -> str:
        """:return: the line, with its final newline."""
        at = self.at.astimezone(dt.UTC)
        # Not strftime: its %Y does not pad years below 1000 to four digits on every libc.
        when = (
            f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
            f"T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"
        )
        fields = (JOURNAL_FORMAT, self.row, self.uid.hex(), self.step.value, self.state.value, when)
        return ",".join(fields) + "\n"


@dataclass(frozen=True)
class Incomplete:
    """A badge whose enrolment did not reach ``verified,done``.

    :param row: the CSV row of its last line.
    :param uid: its real UID.
    :param step: the step to run or finish next (the one announced and not done, else the one
        after the last done).
    :param state: the state of its last line.
    :param line: the journal line of that last line.
    """

    row: str
    uid: bytes
    step: Step
    state: EntryState
    line: int

    def describe(self) -> str:
        """:return: ``row 17 (04a1b2c3d4e5f6) incomplete at app_keys``."""
        return f"row {self.row} ({self.uid.hex()}) incomplete at {self.step.value}"


@dataclass(frozen=True)
class JournalContents:
    """A parsed journal.

    :param entries: its lines after the header, in order, with their line numbers.
    :param torn: the bytes of a torn last line (no final newline) that were left out, or ``b""``.
    :param valid_length: how many bytes of the file the entries (and header) fill.
    """

    entries: tuple[tuple[int, JournalEntry], ...]
    torn: bytes = field(default=b"", repr=False)
    valid_length: int = 0


def check_row(row: object) -> str:
    """:return: ``row`` if it is a row name (1 to 32 of ``A-Z a-z 0-9 . _ : -``).

    :raises ValueError: it is not.
    """
    if not isinstance(row, str) or not _ROW.fullmatch(row):
        raise ValueError("A row name is 1 to 32 of A-Z a-z 0-9 . _ : -")
    return row


def parse_journal(data: bytes, name: str = "enrolment journal") -> JournalContents:
    """Parse a journal strictly.

    :param data: the file's bytes (empty: a new journal).
    :param name: what messages call it.
    :return: its entries; a torn last line is left out (see :attr:`JournalContents.torn`).
    :raises JournalFormatError: larger than :data:`MAX_JOURNAL_BYTES`, a missing or wrong
        header, or a complete line that is not of the format (the message names it).
    """
    if len(data) > MAX_JOURNAL_BYTES:
        raise JournalFormatError(f"The {name} is larger than {MAX_JOURNAL_BYTES} bytes")
    end = data.rfind(b"\n") + 1
    complete, torn = data[:end], data[end:]
    lines = complete.split(b"\n")[:-1]
    if not lines:
        if torn and not JOURNAL_HEADER.encode().startswith(torn):
            raise JournalFormatError(f"The {name} does not start with its header", 1)
        return JournalContents((), torn, 0)
    if lines[0] != JOURNAL_HEADER.encode():
        raise JournalFormatError(f"The {name} does not start with the header {JOURNAL_HEADER}", 1)
    entries = [(number, _entry(raw, number, name)) for number, raw in enumerate(lines[1:], 2)]
    return JournalContents(tuple(entries), torn, end)


def _entry(raw: bytes, number: int, name: str) -> JournalEntry:
    def fail(problem: str) -> JournalFormatError:
        return JournalFormatError(f"The {name}, line {number}: {problem}", number)

    if len(raw) > MAX_JOURNAL_LINE:
        raise fail(f"The line is longer than {MAX_JOURNAL_LINE} characters")
    if not raw.isascii():
        raise fail("The line is not ASCII")
    fields = raw.decode("ascii").split(",")
    if len(fields) != 6:
        raise fail(f"The line has {len(fields)} fields, not 6")
    form, row, uid, step, state, at = fields
    if form != JOURNAL_FORMAT:
        raise fail(f"The format is not {JOURNAL_FORMAT}")
    if not _ROW.fullmatch(row):
        raise fail("The row is not 1 to 32 of A-Z a-z 0-9 . _ : -")
    if not _UID.fullmatch(uid):
        raise fail("The uid is not 7 bytes of lower-case hex")
    if step not in _STEPS:
        raise fail("The step is not one of " + ", ".join(_STEPS))
    if state not in _STATES:
        raise fail("The state is not one of " + ", ".join(_STATES))
    if state == EntryState.PLANNED.value and step != Step.SECOND_FACTOR.value:
        raise fail("Only the second_factor step is planned")
    if not _AT.fullmatch(at):
        raise fail("The time is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        when = dt.datetime.strptime(at, _AT_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise fail("The time is not a date and time") from None
    return JournalEntry(row, bytes.fromhex(uid), _STEPS[step], _STATES[state], when)


def incomplete_badges(entries: Iterable[tuple[int, JournalEntry]]) -> tuple[Incomplete, ...]:
    """:return: the badges whose last line is not ``verified,done``, in the order of their
    last line."""
    last: dict[bytes, tuple[int, JournalEntry]] = {}
    for number, entry in entries:
        if entry.state is EntryState.PLANNED:
            continue
        last.pop(entry.uid, None)
        last[entry.uid] = (number, entry)
    found = []
    for number, entry in sorted(last.values(), key=lambda item: item[0]):
        if entry.step is Step.VERIFIED and entry.state is EntryState.DONE:
            continue
        step = entry.step
        if entry.state is EntryState.DONE:
            # Only VERIFIED has no next step, and a verified badge is complete.
            step = entry.step.next() or entry.step
        found.append(Incomplete(entry.row, entry.uid, step, entry.state, number))
    return tuple(found)


class Journal:
    """An enrolment journal open for appending (see the module docstring).

    Open it with :meth:`open`; it is a context manager, and :meth:`close` releases its lock.

    :param path: the file.
    :param contents: what it held when opened.
    :param fd: the file descriptor, opened ``O_APPEND`` and locked.
    :param clock: ``clock() -> datetime`` for the ``at`` column (UTC now by default).
    """

    def __init__(
        self,
        path: Path,
        contents: JournalContents,
        fd: int,
        clock: ClockFn | None = None,
    ) -> None:
        self.path = path
        self._entries = list(contents.entries)
        self._fd: int | None = fd
        self._clock: ClockFn = clock if clock is not None else _utc_now
        self._next_line = 2 + len(self._entries)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, {len(self._entries)} entries)"

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: ClockFn | None = None) -> Self:
        """Open (or create, mode 0600) a journal, read it, lock it, and cut off a torn last line.

        :param path: the file.
        :param clock: the time source of new lines.
        :return: the journal, ready to append.
        :raises JournalError: the file cannot be opened or read, is not a regular file, or
            another run holds it.
        :raises JournalFormatError: a line that is not of the format.
        """
        file = Path(path)
        name = f"enrolment journal {str(file)!r}"
        created = not file.exists()
        try:
            fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
        except OSError as e:
            raise JournalError(f"Cannot open the {name} ({e.strerror})") from e
        try:
            contents = cls._read_locked(fd, name)
            if contents.torn:
                logger.warning(
                    "The %s ends with a torn line of %d bytes (a run stopped while writing "
                    "it); it is ignored",
                    name,
                    len(contents.torn),
                )
                os.ftruncate(fd, contents.valid_length)
            if contents.valid_length == 0:
                write_all(fd, (JOURNAL_HEADER + "\n").encode())
                os.fsync(fd)
            if created:
                fsync_directory(file.parent)
        except BaseException:
            os.close(fd)
            raise
        logger.info("Enrolment journal %s: %d entries", file, len(contents.entries))
        return cls(file, contents, fd, clock)

    @staticmethod
    def _read_locked(fd: int, name: str) -> JournalContents:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JournalError(f"The {name} is not a regular file")
        os.set_blocking(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalError(f"The {name} is in use by another enrolment run") from e
            raise JournalError(f"Cannot lock the {name} ({e.strerror})") from e
        try:
            data = os.pread(fd, MAX_JOURNAL_BYTES + 1, 0)
        except OSError as e:
            raise JournalError(f"Cannot read the {name} ({e.strerror})") from e
        return parse_journal(data, name)

    @property
    def entries(self) -> tuple[JournalEntry, ...]:
        """:return: every line after the header, the ones written since :meth:`open` too."""
        return tuple(entry for _, entry in self._entries)

    def incomplete(self) -> tuple[Incomplete, ...]:
        """:return: the badges whose enrolment did not reach ``verified,done``."""
        return incomplete_badges(self._entries)

    def history(self, uid: bytes) -> tuple[JournalEntry, ...]:
        """:return: the lines about the badge ``uid``, in order."""
        return tuple(entry for _, entry in self._entries if entry.uid == uid)

    def last(self, uid: bytes) -> JournalEntry | None:
        """:return: the last line about the badge ``uid`` that is a step's progress (not a
        ``planned`` line), or ``None``."""
        for _, entry in reversed(self._entries):
            if entry.uid == uid and entry.state is not EntryState.PLANNED:
                return entry
        return None

    def badges_of_row(self, row: str) -> tuple[JournalEntry, ...]:
        """:return: the last progress line of each badge whose last progress line is about
        ``row``, in journal order (a row has at most one badge: see the enroller)."""
        last: dict[bytes, JournalEntry] = {}
        for _, entry in self._entries:
            if entry.state is not EntryState.PLANNED:
                last.pop(entry.uid, None)
                last[entry.uid] = entry
        return tuple(entry for entry in last.values() if entry.row == row)

    def second_factor_planned(self, uid: bytes) -> bool:
        """:return: whether a PIN was given for the badge ``uid`` since its last reset (a
        ``second_factor,planned`` line, or ``second_factor,intent`` written by a version that
        had no ``planned`` line)."""
        planned = False
        for _, entry in self._entries:
            if entry.uid != uid:
                continue
            if entry.state is EntryState.RESET:
                planned = False
            elif entry.step is Step.SECOND_FACTOR and entry.state in (
                EntryState.PLANNED,
                EntryState.INTENT,
            ):
                planned = True
        return planned

    def completed_rows(self) -> frozenset[str]:
        """:return: the rows some badge of which reached ``verified,done`` (a resumed bulk run
        skips them)."""
        return frozenset(
            entry.row
            for _, entry in self._entries
            if entry.step is Step.VERIFIED and entry.state is EntryState.DONE
        )

    def record(self, row: str, uid: bytes, step: Step, state: EntryState) -> JournalEntry:
        """Append one line and make it durable (``write``, then ``os.fsync``) before returning.

        :param row: the CSV row.
        :param uid: the badge's real UID (7 bytes).
        :param step: the step.
        :param state: intent, done or reset.
        :return: the entry written.
        :raises ValueError: a bad row name or UID.
        :raises JournalError: the journal is closed, or the write failed.
        """
        if self._fd is None:
            raise JournalError(f"The enrolment journal {str(self.path)!r} is closed")
        entry = JournalEntry(row, uid, step, state, self._clock())
        try:
            write_all(self._fd, entry.encode().encode("ascii"))
            os.fsync(self._fd)
        except OSError as e:
            raise JournalError(
                f"Cannot write the enrolment journal {str(self.path)!r} ({e.strerror})"
            ) from e
        self._entries.append((self._next_line, entry))
        self._next_line += 1
        logger.debug("Journal: row %s %s %s", row, step.value, state.value)
        return entry

    def close(self) -> None:
        """Release the lock and close the file; closing twice does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- the bulk-enrolment CSV ----------------------------------------------------------------


@dataclass(frozen=True)
class EnrolmentRow:
    """One badge to enrol, from the bulk CSV.

    :param row: its name in the journal (the ``row`` cell, else the line number).
    :param line: its line in the file.
    :param id_nat: the national identifier (RPPS ``8`` + 11 digits, or a PSI UUID in lower
        case).
    :param issuer: the issuer, or ``None`` (the configuration's).
    :param pin: the second-factor PIN, or ``None``; never shown in a repr.
    """

    row: str
    line: int
    id_nat: str
    issuer: str | None = None
    pin: str | None = field(default=None, repr=False)


def read_enrolment_csv(
    path: str | os.PathLike[str], *, pin_rule: PinRule | None = None
) -> tuple[EnrolmentRow, ...]:
    """Read a bulk-enrolment CSV file (see :func:`parse_enrolment_csv`).

    :param path: the file.
    :param pin_rule: the PIN format (default: the second factor's, 4 to 8 digits).
    :return: the rows, in file order.
    :raises EnrolmentCsvError: the file cannot be read, or is not of the format.
    """
    file = Path(path)
    name = f"enrolment CSV {str(file)!r}"
    try:
        data = read_regular_file(file, MAX_CSV_BYTES)
    except NotARegularInputError as e:
        raise EnrolmentCsvError(f"The {name} is not a regular file") from e
    except OSError as e:
        raise EnrolmentCsvError(f"Cannot read the {name} ({e.strerror})") from e
    return parse_enrolment_csv(data, name, pin_rule=pin_rule)


def parse_enrolment_csv(
    data: bytes, name: str = "enrolment CSV", *, pin_rule: PinRule | None = None
) -> tuple[EnrolmentRow, ...]:
    """Parse a bulk-enrolment CSV strictly.

    :param data: the file's bytes: UTF-8 (a byte-order mark is allowed), a header naming
        ``id_nat`` and any of ``row``, ``issuer``, ``pin``, then one line per badge.
    :param name: what messages call it.
    :param pin_rule: the PIN format (default: the second factor's, 4 to 8 digits).
    :return: the rows, in file order.
    :raises EnrolmentCsvError: larger than :data:`MAX_CSV_BYTES` or :data:`MAX_CSV_ROWS`, not
        UTF-8, a missing header, an unknown, repeated or missing column, a line with another
        number of cells, an empty line, a cell out of range, a repeated row name (the message
        names the line and the column, never a PIN).
    """
    if pin_rule is None:
        from mie.store.secondfactor import SECOND_FACTOR_PIN

        pin_rule = SECOND_FACTOR_PIN
    if len(data) > MAX_CSV_BYTES:
        raise EnrolmentCsvError(f"The {name} is larger than {MAX_CSV_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EnrolmentCsvError(f"The {name} is not UTF-8 (byte {e.start})") from None
    if "\x00" in text:
        raise EnrolmentCsvError(f"The {name} has a NUL character")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns = _csv_header(reader, name)
    rows: list[EnrolmentRow] = []
    seen: dict[str, int] = {}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise EnrolmentCsvError(
                f"The {name}, line {reader.line_num}: not CSV ({e})", reader.line_num
            ) from None
        line = reader.line_num
        if len(rows) >= MAX_CSV_ROWS:
            raise EnrolmentCsvError(f"The {name} has more than {MAX_CSV_ROWS} rows", line)
        row = dict(zip(columns, _cells(cells, columns, line, name), strict=True))
        badge = _csv_badge(row, line, name, pin_rule)
        if badge.row in seen:
            raise EnrolmentCsvError(
                f"The {name}, line {line}: row {badge.row} is also on line {seen[badge.row]}",
                line,
                "row",
            )
        seen[badge.row] = line
        rows.append(badge)
    return tuple(rows)


def _csv_header(reader: Iterable[list[str]], name: str) -> tuple[str, ...]:
    try:
        header = next(iter(reader), None)
    except csv.Error as e:
        raise EnrolmentCsvError(f"The {name}, line 1: not CSV ({e})", 1) from None
    if not header:
        raise EnrolmentCsvError(f"The {name} has no header line", 1)
    for column in header:
        if column not in CSV_COLUMNS:
            shown = repr(column[:32])
            raise EnrolmentCsvError(
                f"The {name}, line 1: unknown column {shown} (columns: {', '.join(CSV_COLUMNS)})",
                1,
                column[:32],
            )
        if header.count(column) > 1:
            raise EnrolmentCsvError(f"The {name}, line 1: column {column} appears twice", 1, column)
    if "id_nat" not in header:
        raise EnrolmentCsvError(f"The {name}, line 1: no id_nat column", 1, "id_nat")
    return tuple(header)


def _cells(cells: list[str], columns: tuple[str, ...], line: int, name: str) -> list[str]:
    if not cells:
        raise EnrolmentCsvError(f"The {name}, line {line}: empty line", line)
    if len(cells) != len(columns):
        raise EnrolmentCsvError(
            f"The {name}, line {line}: {len(cells)} cells, the header has {len(columns)}", line
        )
    for column, cell in zip(columns, cells, strict=True):
        if len(cell) > MAX_CSV_FIELD:
            raise EnrolmentCsvError(
                f"The {name}, line {line}: {column} is longer than {MAX_CSV_FIELD} characters",
                line,
                column,
            )
    return cells


def _csv_badge(cells: dict[str, str], line: int, name: str, pin_rule: PinRule) -> EnrolmentRow:
    def fail(problem: str, column: str) -> EnrolmentCsvError:
        return EnrolmentCsvError(f"The {name}, line {line}: {problem}", line, column)

    row = cells.get("row") or str(line)
    if not _ROW.fullmatch(row):
        raise fail("The row is not 1 to 32 of A-Z a-z 0-9 . _ : -", "row")
    id_nat = cells["id_nat"]
    problem = id_nat_problem(id_nat)
    if problem is not None:
        raise fail(f"The id_nat {problem}", "id_nat")
    issuer = cells.get("issuer") or None
    if issuer is not None:
        problem = issuer_problem(issuer)
        if problem is not None:
            raise fail(f"The issuer {problem}", "issuer")
    pin = cells.get("pin") or None
    if pin is not None:
        try:
            pin_rule.check(pin)
        except MieError as e:
            # PinRule's messages never echo the PIN.
            raise fail(f"The pin is refused ({e})", "pin") from None
    return EnrolmentRow(row, line, id_nat, issuer, pin)


def id_nat_problem(id_nat: str) -> str | None:
    """:return: why ``id_nat`` cannot go into a badge record (an RPPS number ``8`` + 11
    digits, or a PSI UUID in lower case), or ``None`` when it can."""
    if not id_nat:
        return "is empty"
    if not id_nat.isascii() or len(id_nat) > 36:
        return "is not 1 to 36 ASCII characters"
    from mie.trust.identity import parse_id_nat

    try:
        id_type, _ = parse_id_nat(id_nat)
    except MieError:
        return "is not an RPPS number (8 + 11 digits) or a PSI UUID"
    if id_type == "PSI" and id_nat == id_nat.lower():
        return None
    if id_type == "RPPS" and id_nat.startswith("8"):
        return None
    return "is not an RPPS number (8 + 11 digits) or a lower-case PSI UUID"


def issuer_problem(issuer: str) -> str | None:
    """:return: why ``issuer`` cannot go into a badge record (1 to 30 bytes of UTF-8, no
    control character), or ``None`` when it can."""
    size = len(issuer.encode("utf-8", errors="replace"))
    if not 0 < size <= _MAX_ISSUER_BYTES:
        return f"has {size} bytes of UTF-8, not 1 to {_MAX_ISSUER_BYTES}"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in issuer):
        return "has a control character"
    return None


__all__ = [
    "CSV_COLUMNS",
    "JOURNAL_FORMAT",
    "JOURNAL_HEADER",
    "EnrolmentCsvError",
    "EnrolmentRow",
    "EntryState",
    "Incomplete",
    "Journal",
    "JournalContents",
    "JournalEntry",
    "JournalError",
    "JournalFormatError",
    "Step",
    "check_row",
    "id_nat_problem",
    "incomplete_badges",
    "issuer_problem",
    "parse_enrolment_csv",
    "parse_journal",
    "read_enrolment_csv",
]
