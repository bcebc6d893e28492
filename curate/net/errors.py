"""The one exception that carries a refusal to fetch as a ledger reason."""

from __future__ import annotations


class Refused(Exception):
    """A URL that must not (or cannot) be fetched; ``reason`` goes to the ledger."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
