"""What a store says about an object without sending it (size, ETag, Last-Modified), the one
decision made from it (is a copy fetched earlier still the object?), and the errors of
reaching a remote input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Validators:
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None

    def record(self) -> dict:
        return {"bytes": self.size, "etag": self.etag, "last_modified": self.last_modified}

    @classmethod
    def of(cls, entry: Mapping) -> Validators:
        size = entry.get("bytes")
        return cls(
            size=size if isinstance(size, int) else None,
            etag=entry.get("etag") or None,
            last_modified=entry.get("last_modified") or None,
        )


def unchanged(before: Validators, now: Validators) -> bool:
    """Whether the object the store describes `now` is the one fetched when it said `before`.

    An ETag decides when both have one; else Last-Modified does, with the size. A store that
    says neither is never trusted: the object is fetched again (and its sha256 decides)."""
    if before.size is not None and now.size is not None and before.size != now.size:
        return False
    if before.etag and now.etag:
        return _strip_weak(before.etag) == _strip_weak(now.etag)
    if before.last_modified and now.last_modified:
        return before.last_modified == now.last_modified and before.size == now.size
    return False


def _strip_weak(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


class FetchError(OSError):
    """A remote input could not be had. `missing`: the store says it does not exist;
    `retryable`: a timeout, a reset or a 5xx, worth another try."""

    def __init__(self, message: str, *, missing: bool = False, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message
