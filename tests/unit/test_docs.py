"""Every fenced block of README.md and docs/*.md runs in the suite (issue 8: a documented example
that raises must fail a test).

A block's label says what it is, and an HTML comment on the line before the fence may say how it
runs (``<!-- doc-test: MODE -->``):

- ``python``: run in a subprocess, in a temporary directory, with a temporary ``HOME`` and no
  ``MIE_*`` or ``XDG_*`` variable (``getpass.getpass`` answers :data:`DOC_PIN`); a deprecated
  call is an error;
- ``sh``: each command run with bash from the checkout, with the same environment; a command
  left in the background is refused (it would outlive the test);
- ``console``: each ``$ `` line run as above, and its stdout compared with the lines shown under it;
- ``text``: synopses and diagrams, never run;
- ``pcsc`` mode (``python`` or ``sh``): run against an emulated CPS3 through pcscd, by
  ``tests/integration/test_docs_pcsc.py``;
- ``dry-run`` mode (``sh``): ``bash -n`` on the block, then each command in its dry form
  (``make -n``, ``mie SUB --help``, ``SCRIPT.py --help``, ``pytest --collect-only``).

In every subprocess, ``~/.cache/mie/testpki`` is the suite's TEST PKI, so the emulator and
``mie trust import ~/.cache/mie/testpki/test-chain.pem`` find it without generating keys.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOC_PIN = "1234"
LANGUAGES = frozenset({"python", "sh", "console", "text"})
MODES = {"pcsc": frozenset({"python", "sh"}), "dry-run": frozenset({"sh"})}
TIMEOUT = 120.0
# A documented example that calls a deprecated API fails (the warning is attributed to the caller,
# the block, which runs as __main__).
DEPRECATED_IS_AN_ERROR = "error::DeprecationWarning:__main__"

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# A fence indented 4 spaces or more (in a list item, say) is one too: refused, never skipped.
_INDENTED_FENCE = re.compile(r"^\s{4,}(`{3,}|~{3,})")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<mode>\S+)\s*-->\s*$")
_OPERATORS = frozenset({"|", "||", "&&", ";"})
# ``.venv/bin/X`` in a document means the project's virtualenv: the one running the suite (a
# checkout exported without its .venv still runs its documents).
_VENV_BIN = re.compile(r"(?<![\w./-])\.venv/bin/")

# The runner of a python block: the block's lines keep their line numbers in the document, so a
# traceback points at the README or docs line that failed.
RUNNER = """
import getpass, sys
source_path, document, line, pin = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
getpass.getpass = lambda prompt="Password: ", stream=None: pin
with open(source_path, encoding="utf-8") as f:
    source = f.read()
sys.argv = [document]
exec(compile("\\n" * line + source, document, "exec"), {"__name__": "__main__"})
"""


class DocFormatError(ValueError):
    """A fenced block the harness cannot classify (no label, unknown label or mode)."""


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the line of its opening fence (1-based)."""

    document: str
    line: int
    language: str
    mode: str | None
    text: str

    @property
    def id(self) -> str:
        """:return: ``document:line``, the pytest id of the block."""
        return f"{self.document}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One shell command of a block, with the output a ``console`` block shows under it."""

    line: int
    text: str
    output: tuple[str, ...] = field(default=())


def parse_blocks(markdown: str, document: str) -> list[Block]:
    """Split a Markdown document into its fenced blocks.

    :param markdown: the document's text.
    :param document: its name in ids and messages.
    :return: the blocks, in order.
    :raises DocFormatError: a fence without a known label, a marker that is not followed by a
        fence, a mode the block's language cannot have, or a fence never closed.
    """
    blocks: list[Block] = []
    lines = markdown.splitlines()
    mode: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line)
        opening = _FENCE.match(line)
        if marker:
            mode = (index + 1, marker.group("mode"))
        elif opening:
            end = _closing(lines, index, opening.group("fence"), document)
            language = opening.group("info").strip()
            blocks.append(_block(document, index + 1, language, mode, lines[index + 1 : end]))
            mode = None
            index = end
        elif _INDENTED_FENCE.match(line):
            raise DocFormatError(
                f"{document}:{index + 1}: indented fence: the harness runs only fences at the "
                "margin (up to 3 spaces)"
            )
        elif line.strip() and mode is not None:
            raise DocFormatError(f"{document}:{mode[0]}: doc-test marker not followed by a fence")
        index += 1
    if mode is not None:
        raise DocFormatError(f"{document}:{mode[0]}: doc-test marker not followed by a fence")
    return blocks


def _closing(lines: list[str], start: int, fence: str, document: str) -> int:
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            return index
    raise DocFormatError(f"{document}:{start + 1}: fence never closed")


def _block(
    document: str, line: int, language: str, mode: tuple[int, str] | None, body: list[str]
) -> Block:
    where = f"{document}:{line}"
    if language not in LANGUAGES:
        raise DocFormatError(
            f"{where}: fence label {language!r} is not one of {', '.join(sorted(LANGUAGES))}"
        )
    name = mode[1] if mode else None
    if name is not None and language not in MODES.get(name, frozenset()):
        raise DocFormatError(
            f"{where}: doc-test mode {name!r} does not apply to a {language} block"
        )
    return Block(document, line, language, name, "\n".join(body) + "\n")


def documents() -> list[Path]:
    """:return: README.md and every Markdown file of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    """:return: the blocks of every document (a format problem fails the collection)."""
    blocks: list[Block] = []
    for path in documents():
        blocks += parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return blocks


def blocks_of(language: str, mode: str | None) -> list[Block]:
    """:return: the blocks of one label and mode, for ``pytest.mark.parametrize``."""
    return [b for b in all_blocks() if b.language == language and b.mode == mode]


def commands(block: Block) -> list[Command]:
    """Split a ``sh`` or ``console`` block into commands.

    Backslash continuations are joined; blank lines and comment lines are skipped. In a
    ``console`` block only ``$ `` lines are commands, and the lines under one are its output.
    """
    found: list[Command] = []
    pending: list[str] = []
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if block.language == "console" and not pending and not line.startswith("$ "):
            if found and line.strip():
                last = found[-1]
                found[-1] = Command(last.line, last.text, (*last.output, line.rstrip()))
            continue
        if block.language == "console" and not pending:
            line = line[2:]
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        if line.endswith("\\"):
            continue
        first = number - len(pending) + 1
        found.append(Command(first, "\n".join(pending)))
        pending = []
    if pending:
        raise DocFormatError(f"{block.id}: the last command ends with a backslash")
    return found


def in_background(command: str) -> bool:
    """:return: whether the command leaves a job running (a trailing ``&``)."""
    tokens = _tokens(command)
    return bool(tokens) and tokens[-1] == "&"


def in_this_venv(command: str) -> str:
    """:return: ``command`` with each ``.venv/bin/`` path taken from the running virtualenv."""
    return _VENV_BIN.sub(f"{BIN}/", command)


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def dry_run(command: str) -> list[list[str]]:
    """The dry form of each program a command runs.

    :param command: one shell command (a pipeline or ``&&`` list is split into its programs).
    :return: the argument vectors to run instead: ``make -n ARGS``, ``mie SUB --help``,
        ``PYTHON SCRIPT.py --help``, ``PYTHON -m pytest ARGS --collect-only -q``; ``echo`` needs
        none.
    :raises DocFormatError: a program with no dry form.
    """
    runs: list[list[str]] = []
    segment: list[str] = []
    for token in [*_tokens(command), ";"]:
        if token not in _OPERATORS:
            segment.append(token)
            continue
        if segment:
            runs += _dry(segment, command)
        segment = []
    return runs


def _dry(argv: list[str], command: str) -> list[list[str]]:
    program = Path(argv[0]).name
    rest = argv[1:]
    if program == "echo":
        return []
    if program == "make":
        return [["make", "-n", *rest]]
    if program == "mie" and rest and not rest[0].startswith("-"):
        return [[argv[0], rest[0], "--help"]]
    if program.startswith("python") and rest[:2] == ["-m", "pytest"]:
        return [[argv[0], *rest, "--collect-only", "-q", "-p", "no:cacheprovider"]]
    if program.startswith("python") and rest and rest[0].endswith(".py"):
        return [[argv[0], rest[0], "--help"]]
    raise DocFormatError(f"no dry-run form for {program!r} in: {command}")


def doc_env(home: Path, test_pki: Path, **extra: str) -> dict[str, str]:
    """The environment of a documented command: a fresh ``HOME`` whose TEST PKI is the suite's,
    no ``MIE_*`` or ``XDG_*`` variable, the project's virtualenv first on ``PATH``.

    :param home: the temporary home directory (created).
    :param test_pki: the TEST PKI directory to show as ``~/.cache/mie/testpki``.
    :param extra: variables to set on top.
    """
    cache = home / ".cache" / "mie"
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / "testpki"
    if not link.exists():
        link.symlink_to(test_pki, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIE_", "XDG_"))}
    env["HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.update(extra)
    return env


def outcome(what: str, code: int | None, stdout: str, stderr: str) -> str:
    """:return: a failure message: what ran, its exit status and the end of its output."""
    return f"{what}\nexit {code}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"


def _outcome(what: str, out: subprocess.CompletedProcess[str]) -> str:
    return outcome(what, out.returncode, out.stdout, out.stderr)


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def run_python(block: Block, work: Path, env: dict[str, str]) -> None:
    """Run a python block in ``work``; fail the test with its output if it raises."""
    source = work / "block.py"
    source.write_text(block.text, encoding="utf-8")
    argv = [sys.executable, "-W", DEPRECATED_IS_AN_ERROR, "-c", RUNNER, str(source)]
    out = _run([*argv, block.document, str(block.line), DOC_PIN], work, env)
    assert out.returncode == 0, _outcome(block.id, out)


def run_command(block: Block, command: Command, env: dict[str, str]) -> None:
    """Run one command of a block with bash from the checkout; it must exit 0 (and print what a
    console block shows under it)."""
    where = f"{block.document}:{command.line}: {command.text}"
    assert not in_background(command.text), f"{where}: a background job outlives the test"
    out = _run(["bash", "-euo", "pipefail", "-c", in_this_venv(command.text)], ROOT, env)
    assert out.returncode == 0, _outcome(where, out)
    if command.output:
        assert [line.rstrip() for line in out.stdout.splitlines()] == list(command.output), where


def run_dry(block: Block, env: dict[str, str]) -> None:
    """Check a dry-run block: its syntax, then the dry form of every command."""
    syntax = _run(["bash", "-n"], ROOT, env, stdin=block.text)
    assert syntax.returncode == 0, _outcome(block.id, syntax)
    for command in commands(block):
        for argv in dry_run(in_this_venv(command.text)):
            if "/" not in argv[0]:
                argv = [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]]
            out = _run(argv, ROOT, env)
            assert out.returncode == 0, _outcome(f"{block.document}:{command.line}: {argv}", out)


def _id(block: Block) -> str:
    return block.id


# The documents themselves.


def test_every_block_is_labelled_and_every_marker_applies() -> None:
    blocks = all_blocks()
    assert blocks, "no fenced block found: the harness looks in the wrong place"
    assert {b.document for b in blocks} >= {"README.md"}


@pytest.mark.parametrize("block", blocks_of("python", None), ids=_id)
def test_python_block_runs(block: Block, tmp_path: Path, test_pki_dir: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    run_python(block, work, doc_env(tmp_path / "home", test_pki_dir))


@pytest.mark.parametrize("block", blocks_of("sh", None) + blocks_of("console", None), ids=_id)
def test_shell_block_runs_command_by_command(
    block: Block, tmp_path: Path, test_pki_dir: Path
) -> None:
    env = doc_env(tmp_path / "home", test_pki_dir)
    found = commands(block)
    assert found, f"{block.id}: no command"
    for command in found:
        run_command(block, command, env)


@pytest.mark.parametrize("block", blocks_of("sh", "dry-run"), ids=_id)
def test_dry_run_block_parses_and_its_commands_answer(
    block: Block, tmp_path: Path, test_pki_dir: Path
) -> None:
    run_dry(block, doc_env(tmp_path / "home", test_pki_dir))


# The harness: each rule can fail.

SAMPLE = """\
# Title

<!-- doc-test: dry-run -->
```sh
make fuzz FUZZ_INPUTS=200000   # nightly
echo 1234 | mie auth --pin-stdin \\
    --json
```

```text
mie readers [--wait SECONDS]
```

```console
$ echo one
one
$ true
```
"""


def test_blocks_keep_their_label_mode_and_line() -> None:
    blocks = parse_blocks(SAMPLE, "sample.md")
    assert [(b.line, b.language, b.mode) for b in blocks] == [
        (4, "sh", "dry-run"),
        (10, "text", None),
        (14, "console", None),
    ]
    assert blocks[1].text == "mie readers [--wait SECONDS]\n"


def test_commands_join_continuations_and_skip_comments() -> None:
    sh, _, console = parse_blocks(SAMPLE, "sample.md")
    assert [(c.line, c.text) for c in commands(sh)] == [
        (5, "make fuzz FUZZ_INPUTS=200000   # nightly"),
        (6, "echo 1234 | mie auth --pin-stdin \\\n    --json"),
    ]
    assert commands(console) == [Command(15, "echo one", ("one",)), Command(17, "true")]


def test_dry_forms() -> None:
    assert dry_run("make fuzz FUZZ_INPUTS=200000   # nightly") == [
        ["make", "-n", "fuzz", "FUZZ_INPUTS=200000"]
    ]
    assert dry_run("echo 1234 | mie auth --pin-stdin \\\n --json") == [["mie", "auth", "--help"]]
    assert dry_run(".venv/bin/python scripts/fuzz.py --inputs 2000") == [
        [".venv/bin/python", "scripts/fuzz.py", "--help"]
    ]
    assert dry_run(".venv/bin/python -m pytest tests/fuzz -q")[0][-4:] == [
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    with pytest.raises(DocFormatError, match="no dry-run form for 'rm'"):
        dry_run("make demo && rm -rf build")


def test_the_documented_virtualenv_is_the_running_one() -> None:
    assert in_this_venv(".venv/bin/python -m pytest && x/.venv/bin/y") == (
        f"{BIN}/python -m pytest && x/.venv/bin/y"
    )


def test_a_background_job_is_seen() -> None:
    assert in_background("mie emulate cps3 --pin 1234 &   # prints the trust command")
    assert not in_background("mie auth --json && echo done")


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        ("```\nx\n```\n", "fence label '' is not one of"),
        ("```bash\nx\n```\n", "fence label 'bash'"),
        ("<!-- doc-test: pcsc -->\n```text\nx\n```\n", "mode 'pcsc' does not apply to a text"),
        ("<!-- doc-test: later -->\n```sh\nx\n```\n", "mode 'later' does not apply"),
        ("<!-- doc-test: pcsc -->\nsome words\n```sh\nx\n```\n", "marker not followed by a fence"),
        ("```sh\nx\n", "fence never closed"),
        ("- item:\n\n    ```python\n    raise TypeError\n    ```\n", "indented fence"),
    ],
)
def test_a_block_the_harness_cannot_classify_is_refused(markdown: str, message: str) -> None:
    with pytest.raises(DocFormatError, match=re.escape(message)):
        parse_blocks(markdown, "bad.md")


def test_a_failing_python_block_fails_with_the_document_line(
    tmp_path: Path, test_pki_dir: Path
) -> None:
    block = Block("README.md", 40, "python", None, "x = 1\nraise TypeError('example')\n")
    with pytest.raises(AssertionError) as raised:
        run_python(block, tmp_path, doc_env(tmp_path / "home", test_pki_dir))
    assert 'File "README.md", line 42' in str(raised.value)
    assert "TypeError: example" in str(raised.value)


def test_a_python_block_that_calls_a_deprecated_api_fails(
    tmp_path: Path, test_pki_dir: Path
) -> None:
    source = "import warnings\nwarnings.warn('old', DeprecationWarning, stacklevel=1)\n"
    with pytest.raises(AssertionError, match="DeprecationWarning: old"):
        run_python(
            Block("x.md", 1, "python", None, source),
            tmp_path,
            doc_env(tmp_path / "h", test_pki_dir),
        )


def test_a_python_block_sees_a_fresh_home_and_the_pin(tmp_path: Path, test_pki_dir: Path) -> None:
    check = (
        "import getpass, os\nfrom pathlib import Path\n"
        "assert Path.home() == Path(os.environ['HOME']) and 'MIE_TEST_PKI' not in os.environ\n"
        "assert (Path.home() / '.cache/mie/testpki/test-chain.pem').is_file()\n"
        f"assert getpass.getpass('PIN: ') == {DOC_PIN!r}\n"
    )
    home = tmp_path / "home"
    run_python(Block("x.md", 1, "python", None, check), tmp_path, doc_env(home, test_pki_dir))


def test_a_failing_command_or_other_output_fails(tmp_path: Path, test_pki_dir: Path) -> None:
    env = doc_env(tmp_path / "home", test_pki_dir)
    block = Block("x.md", 1, "console", None, "")
    with pytest.raises(AssertionError, match="exit 1"):
        run_command(block, Command(2, "false | true"), env)
    with pytest.raises(AssertionError, match=re.escape("x.md:2: echo two")):
        run_command(block, Command(2, "echo two", ("one",)), env)
    with pytest.raises(AssertionError, match="background job"):
        run_command(block, Command(2, "sleep 1 &"), env)
    with pytest.raises(AssertionError, match="no-such-subcommand"):
        run_dry(Block("x.md", 1, "sh", "dry-run", "mie no-such-subcommand\n"), env)


# Issue 10, Done when: "The benchmark table is in docs/performance.md".

FIDO_BENCH_ROWS = {
    "mie_per_s": "mie:",
    "fido2_server_per_s": "python-fido2",
    "py_webauthn_per_s": "py_webauthn",
    "floor_per_s": "floor:",
}


def fido_bench_section(markdown: str) -> str:
    """:return: the ``bench_fido.py`` section of performance.md (up to the next ``## ``)."""
    start = markdown.index("(`benchmarks/bench_fido.py`)")
    end = markdown.find("\n## ", start)
    return markdown[start : end if end != -1 else len(markdown)]


def fido_bench_figures(section: str) -> tuple[dict[str, float], dict[str, object]]:
    """:return: the per-second figure of each row of the section's table (keyed by the JSON
    name of :data:`FIDO_BENCH_ROWS`), and the JSON line the script printed.

    :raises AssertionError: a row or the JSON line missing, or not a figure.
    """
    import json

    rows: dict[str, float] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for name, prefix in FIDO_BENCH_ROWS.items():
            if line.startswith("|") and cells[0].startswith(prefix) and name not in rows:
                rows[name] = float(cells[1].replace(",", ""))
    assert set(rows) == set(FIDO_BENCH_ROWS), f"rows of the table: {sorted(rows)}"
    lines = [ln.strip("`") for ln in section.splitlines() if ln.startswith('`{"mie_per_s"')]
    assert len(lines) == 1, "the JSON line bench_fido.py printed"
    figures = json.loads(lines[0])
    assert isinstance(figures, dict)
    return rows, figures


def test_the_fido2_benchmark_table_is_in_performance_md() -> None:
    section = fido_bench_section((ROOT / "docs" / "performance.md").read_text(encoding="utf-8"))
    rows, figures = fido_bench_figures(section)
    for name, shown in rows.items():
        value = figures[name]
        assert isinstance(value, float) and value > 0, name
        # The table shows the JSON line's figure, rounded.
        assert abs(shown - value) <= 1, (name, shown, value)
    count = figures["count"]
    accepted = figures["accepted"]
    assert isinstance(accepted, dict)
    assert all(accepted[name.removesuffix("_per_s")] == count for name in FIDO_BENCH_ROWS)


def test_the_fido2_benchmark_check_can_fail() -> None:
    good = (
        "(`benchmarks/bench_fido.py`)\n\n| verifier | per second |\n|---|---:|\n"
        "| mie: x | 6,056 |\n| python-fido2 x | 1,594 |\n| py_webauthn x | 6,766 |\n"
        "| floor: x | 15,046 |\n\n"
        '`{"mie_per_s": 6055.9, "fido2_server_per_s": 1593.8, "py_webauthn_per_s": 6765.7, '
        '"floor_per_s": 15046.0}`\n'
    )
    rows, figures = fido_bench_figures(fido_bench_section(good))
    assert rows["mie_per_s"] == 6056 and figures["floor_per_s"] == 15046.0
    with pytest.raises(AssertionError, match="rows of the table"):
        fido_bench_figures(good.replace("| floor: x | 15,046 |\n", ""))
    with pytest.raises(AssertionError, match="JSON line"):
        fido_bench_figures(good.replace('`{"mie_per_s"', '`{"other"'))
