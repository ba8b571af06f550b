"""The command line itself: help without torch, every command with examples, defaults shown
only where there is one."""

from __future__ import annotations

import subprocess
import sys

from tunewise.cli import COMMANDS, build_parser


def test_help_and_init_load_no_torch():
    code = (
        "import sys\n"
        "from tunewise.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert main(['init', '--help']) == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_has_examples_and_init_comes_first():
    assert next(iter(COMMANDS)) == "init"
    assert all(c.examples for c in COMMANDS.values())


def test_help_shows_real_defaults_only(capsys):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    serve = sub["serve"].format_help()
    assert "(default: 8000)" in serve and "(default: None)" not in serve
    assert "(default: False)" not in sub["init"].format_help()
