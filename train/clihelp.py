"""The help formatter every `cloudcover` verb uses, so `--help` reads the same everywhere."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show '(default: X)' only where a default means something: not on required options, on/off flags,
    options without a default, or help text that already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or action.default in (None, False, True, argparse.SUPPRESS)
                or "default" in text):
            return text
        return super()._get_help_string(action)
