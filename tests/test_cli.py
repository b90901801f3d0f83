"""The single `cloudcover` command: every stage's verbs are reachable and --help explains them."""

import re
import subprocess
import sys

import pytest

from cloudcover.riscv.cli import main


# Every verb of the chain, as README and `cloudcover --help`'s epilog name them: a stage whose CLI module fails to
# import is skipped by the dispatcher, so its verb would silently vanish from the command.
VERBS = ("data", "train", "tune", "evaluate", "predict", "export", "compile", "build", "bench")


def test_help_lists_the_chain(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cloudcover") and "riscv64" in out
    listed = set(re.findall(r"^ {4}(\w+)\s", out, re.M))  # argparse's sub-command lines
    assert set(VERBS) <= listed, listed


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cloudcover {verb}")


def test_unknown_verb_is_an_error():
    proc = subprocess.run([sys.executable, "-m", "cloudcover.riscv.cli", "no-such-verb"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


