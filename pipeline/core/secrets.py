"""What never leaves the client: the API key, credentials in a URL (`user:pass@`) and the
values of a URL's query (`?api-key=...`). `Redactor` blanks them out of any text before it is
cut or stored; `scrub_url` is a URL as it may be recorded or shown.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

MASK = "***"
# Shorter values are not taken for secrets: blanking "1" or "v1" would garble every message.
MIN_SECRET = 4


def scrub_url(url: str) -> str:
    """`url` with any user name and password removed and every query value blanked (names
    kept, so `?api-version=***` still says what was there)."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        query = "&".join(
            f"{name}={MASK}" if sep else name
            for name, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:  # not a URL at all (a bad port, say): show nothing of it
        return MASK


def has_userinfo(url: str) -> bool:
    """Whether `url` carries a user name or password (`https://user:pass@host/...`)."""
    try:
        return "@" in urllib.parse.urlsplit(url).netloc
    except ValueError:
        return False


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that are credentials: user name, password and query values."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.username or "", parts.password or ""]
    for pair in parts.query.split("&"):
        raw = pair.partition("=")[2]
        found += [raw, urllib.parse.unquote_plus(raw)]  # as written, and as a server reads it
    return found


class Redactor:
    """Blanks known secrets out of text; call it on every string that leaves the client,
    before it is cut to length (a cut secret would keep its prefix otherwise)."""

    def __init__(self, secrets: Iterable[str | None]):
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET:
                # As sent, and as a server may echo it: URL-encoded, or JSON-escaped.
                forms |= {secret, urllib.parse.quote(secret, safe=""), secret.replace("/", "\\/")}
        self._forms = sorted(forms, key=len, reverse=True)  # a longer secret before its part
        self._bytes = [(f.encode(), MASK.encode()) for f in self._forms]

    @classmethod
    def for_endpoint(cls, base_url: str, api_key: str | None) -> Redactor:
        return cls([api_key, *url_secrets(base_url)])

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def body(self, data: bytes) -> bytes:
        """A response body with every secret blanked, before anything reads or cuts it."""
        for form, mask in self._bytes:
            if form in data:
                data = data.replace(form, mask)
        return data
