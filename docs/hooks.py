"""MkDocs hooks: the command-line reference is written from sevis's own argument parser, so it
says what `sevis --help` says."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- sevis --help -->"


def _sections(parser: argparse.ArgumentParser, name: str, depth: int = 2) -> list[str]:
    out = [f"{'#' * depth} `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:  # argparse keeps its subcommands here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _sections(sub, f"{name} {sub_name}", depth + 1)
    return out


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from sevis.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: one width for the page
    return markdown.replace(MARKER, "\n".join(_sections(build_parser(), "sevis")))
