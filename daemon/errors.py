"""The daemon's error tree. Storage and adapter errors keep their own trees and are
caught at the per-job boundary.

    StorylineError
     +-- ConfigError            a setting is missing or wrong; names the dotted key
     +-- AlreadyRunning         another daemon holds the database
     +-- UserError              a CLI argument names nothing we know
"""

from __future__ import annotations


class StorylineError(Exception):
    """Base of the daemon's errors."""


class ConfigError(StorylineError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class AlreadyRunning(StorylineError):
    """Another storyline process holds the SQLite database."""


class UserError(StorylineError):
    """A command-line argument does not name anything we know."""


class NoSuchSource(UserError):
    """No source has the id, URL or name given."""
