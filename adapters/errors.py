"""Errors raised by adapters. They carry a reason a person can read."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every adapter error."""


class UnusableInput(AdapterError):
    """The input cannot become an observation (empty, binary, undecodable...).

    ``reason`` is a short machine-friendly code, ``str(exc)`` the readable sentence.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
