"""Every command that README.md's code blocks show still parses: a renamed option or target
fails here, not for a reader.

``kedro``, ``fruits-kedro`` and ``python -m <module>`` commands run in this process up to the
point where their options are parsed (click's and argparse's own parsing, values checked),
then stop before doing anything; ``make`` targets run as ``make -n``; ``python -m pytest -m
...`` markers must be registered. Other commands (curl, source) are not checked.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from kedro.framework.session import KedroSession

from tests.conftest import PROJECT_ROOT

# runpy warns that a module it runs as __main__ was imported before (this process imported it).
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")

README = PROJECT_ROOT / "README.md"
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
# The program of a command, as the README writes it, and the module that runs it.
MODULES = {"kedro": "kedro", "fruits-kedro": "fruits_kedro"}


def readme_commands(text: str) -> list[list[str]]:
    """The checked commands of the README's shell blocks, each as its words (program first,
    ``.venv/bin/`` and variable assignments removed)."""
    commands = []
    for block in _shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment, not a '#' inside a word
            if not line:
                continue
            try:
                words = shlex.split(line)
            except ValueError:  # not shell (a diagram's arrows and quotes)
                continue
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "||", ";", "|"):
                    if command:
                        commands.append(command)
                    command = []
                elif command or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
                    command.append(Path(word).name if not command else word)
    return [c for c in commands if c[0] in (*MODULES, "make") or (c[0].startswith("python") and c[1:2] == ["-m"])]


def _shell_blocks(text: str) -> list[str]:
    """The text of each fenced block whose language is a shell's, or none."""
    blocks, current, language = [], None, None
    for line in text.splitlines(keepends=True):
        fence = re.match(r"^\s*```\s*(\w*)", line)
        if fence and current is None:
            current, language = [], fence.group(1)
        elif fence:
            if language in SHELL_LANGUAGES:
                blocks.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


class _Parsed(BaseException):
    """Raised where a command would start its work: its arguments parsed."""


def check_command(words: list[str], monkeypatch) -> None:
    """Raise AssertionError (or pytest.fail) if ``words`` does not parse as the README shows it."""
    program, arguments = words[0], words[1:]
    if program == "make":
        result = subprocess.run(
            [shutil.which("make"), "-n", "-C", str(PROJECT_ROOT), *arguments],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{shlex.join(words)}: {result.stderr.strip()}"
        return
    if program in MODULES:
        module = MODULES[program]
    else:  # python -m <module> ...
        module, arguments = arguments[1], arguments[2:]
    if module == "pytest":
        _check_markers(arguments)
        return
    _parse_only(monkeypatch)
    monkeypatch.setattr(sys, "argv", [program, *arguments])
    monkeypatch.chdir(PROJECT_ROOT)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except _Parsed:
        return
    except SystemExit as exit_:
        pytest.fail(f"{shlex.join(words)}: refused (exit status {exit_.code})")
    pytest.fail(f"{shlex.join(words)}: ended without parsing arguments (click or argparse)")


def _parse_only(monkeypatch) -> None:
    """Commands stop once parsed: click's at their invocation, argparse's after parse_args."""
    invoke = click.Command.invoke

    def parsed_click(self, ctx):
        if isinstance(self, click.Group):  # a group's own callback, before its command is parsed
            return invoke(self, ctx)
        if any(isinstance(p, click.Argument) and p.nargs == -1 and p.type == click.UNPROCESSED for p in self.params):
            return invoke(self, ctx)  # hands its arguments to argparse (fruits-kedro predict)
        raise _Parsed

    parse_args = argparse.ArgumentParser.parse_args

    def parsed_argparse(self, args=None, namespace=None):
        parse_args(self, args, namespace)
        raise _Parsed

    def no_session(*args, **kwargs):
        raise AssertionError("a README command started a Kedro session instead of stopping once parsed")

    monkeypatch.setattr(click.Command, "invoke", parsed_click)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parsed_argparse)
    monkeypatch.setattr(KedroSession, "create", no_session)


def _check_markers(arguments: list[str]) -> None:
    import tomllib

    registered = {
        marker.split(":")[0]
        for marker in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
            "markers"
        ]
    }
    for flag, expression in zip(arguments, arguments[1:]):
        if flag == "-m":
            used = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"not", "and", "or"}
            assert used <= registered, f"pytest -m {expression}: not registered: {used - registered}"


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_shows_each_kind_of_command():
    assert {words[0] for words in COMMANDS} >= {"kedro", "make", "fruits-kedro"}


@pytest.mark.parametrize("words", COMMANDS, ids=[shlex.join(words) for words in COMMANDS])
def test_a_readme_command_parses(words, monkeypatch):
    check_command(words, monkeypatch)


@pytest.mark.parametrize(
    "line",
    [
        "kedro run --pipelinez evaluation",  # a renamed option
        "kedro run --pipelines evaluation --params",  # an option without its value
        ".venv/bin/fruits-kedro predict photo.jpg --topp 3",
        "make no-such-target",
        "python -m fruits_kedro.cloud.upload path --buckett B",
        "python -m pytest -m no_such_marker",
    ],
)
def test_a_command_that_no_longer_parses_fails(line, monkeypatch):
    [words] = readme_commands(f"```bash\n{line}\n```\n")
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check_command(words, monkeypatch)


def test_commands_are_read_from_shell_blocks_only():
    text = (
        "```bash\n"
        "A=1 .venv/bin/kedro run --params x=1,y=2   # a comment\n"
        "make run && .venv/bin/python -m fruits_kedro.cloud.emr --bucket B \\\n   --prefix P\n"
        "curl -F file=@photo.jpg http://127.0.0.1:8000/predict\n"
        "```\n"
        "```python\nkedro = 1\n```\n"
    )
    assert readme_commands(text) == [
        ["kedro", "run", "--params", "x=1,y=2"],
        ["make", "run"],
        ["python", "-m", "fruits_kedro.cloud.emr", "--bucket", "B", "--prefix", "P"],
    ]


def test_a_kedro_command_prints_no_warning_or_traceback():
    """The one real process here: what a reader sees first (the plugins' loading included)."""
    kedro = Path(sys.executable).parent / "kedro"
    result = subprocess.run(
        [str(kedro), "run", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0 and "--pipelines" in result.stdout
    assert "Warning" not in result.stdout + result.stderr and "Traceback" not in result.stderr, result.stderr
