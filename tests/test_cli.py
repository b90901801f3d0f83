"""The single `cloudcover` command: every stage's verbs are reachable and --help explains them."""

import subprocess
import sys

from cloudcover.riscv.cli import main


def test_help_lists_the_chain(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "riscv64" in out and "VERB" in out


def test_unknown_verb_is_an_error():
    proc = subprocess.run([sys.executable, "-m", "cloudcover.riscv.cli", "no-such-verb"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


