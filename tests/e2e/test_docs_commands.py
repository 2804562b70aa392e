"""Every `mcpx` command line in README.md and docs/ names a real subcommand
and real flags: each is read from the pages (code blocks and inline code) and
checked against the binary's own `--help`, so a renamed flag cannot leave a
page telling users to type something that fails."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from harness import MCPX_BIN, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) for each `mcpx ...` a reader is told to run."""
    found = []
    for page in PAGES:
        in_block = False
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            candidates = []
            if in_block:
                candidates.append(re.sub(r"^\s*(\$|#)\s*", "", line))
            else:
                candidates.extend(re.findall(r"`(mcpx [^`]+)`", line))
            for c in candidates:
                c = c.split("#", 1)[0].split("&&", 1)[0].split("|", 1)[0].split(">", 1)[0].strip()
                # `mcpx bridge: listening on ...` is what mcpx prints, not a command.
                if re.match(r"(\./|target/release/)?mcpx [a-z-]+:", c):
                    continue
                if c.startswith("mcpx ") or c.startswith("./mcpx ") or c.startswith("target/release/mcpx "):
                    found.append((page.name, c))
    return found


def help_text(*words: str) -> str:
    out = subprocess.run([MCPX_BIN, *words, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"mcpx {' '.join(words)} --help failed: {out.stderr}"
    return out.stdout


def subcommands(*words: str) -> set[str]:
    text = help_text(*words)
    if "Commands:" not in text:
        return set()
    block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1) for line in block.splitlines() if (m := re.match(r"^  (\S+)(\s{2,}|$)", line))} - {"help"}


COMMANDS = documented_commands()


def test_the_pages_document_commands():
    assert len(COMMANDS) >= 20, "the command lines were not found in the docs"


@pytest.mark.parametrize("page,line", COMMANDS, ids=[f"{p}:{c[:48]}" for p, c in COMMANDS])
def test_a_documented_command_exists(page, line):
    try:
        words = shlex.split(line)[1:]
    except ValueError:
        words = line.split()[1:]
    path: list[str] = []
    # Walk down the subcommands the line names (`baseline show`, `run`).
    while words and not words[0].startswith("-") and words[0] in subcommands(*path):
        path.append(words.pop(0))
    if words and not words[0].startswith("-") and not path:
        pytest.fail(f"{page}: `{line}`: `{words[0]}` is not an mcpx command ({sorted(subcommands())})")
    text = help_text(*path)
    for w in words:
        if not w.startswith("-"):
            continue
        flag = w.split("=", 1)[0]
        # A short flag is listed as "-c, --config"; a long one as "--config".
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=<\[]|$)", text, re.M), \
            f"{page}: `{line}`: `mcpx {' '.join(path)}` has no flag {flag}"
