"""Pasteur: a zero-knowledge pastebin whose pastes live in a Git repository."""

__version__ = "0.1.0"
