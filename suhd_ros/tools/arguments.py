"""Argument types shared by the command-line tools."""

from __future__ import annotations

import argparse


def at_least_one(text: str) -> int:
    """An integer >= 1 (a count of images, threads): argparse prints the usage line and exits
    with 2 otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, found {value}")
    return value
