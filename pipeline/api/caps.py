"""Every body the client reads is capped, so that no answer (an endless chunked body, a 200 MB
"image", a 150 MB error page) can take more memory than the largest real answer needs.

- An answer (2xx): n x the largest image (`limits.max_image_mb`, decoded), as base64 (4/3 of
  it), plus room for the JSON around it. Past the cap it is unusable, retried like a 5xx.
- An error page: a few hundred kB, enough for any real error object; the rest is not read.
- A `url` image download: the largest image.
Past a cap the connection is closed, not drained: a hostile server could send forever.
"""

from __future__ import annotations

import math

import aiohttp

MB = 2**20
DEFAULT_MAX_IMAGE_MB = 64.0  # 3840x3840 RGBA is 59 MB raw: no PNG the API sends is larger
ERROR_BODY_CAP = 256 * 1024
_JSON_ROOM = 1 * MB  # usage, metadata and a revised prompt around the images
_MAX_N = 10  # the API's largest n: the cap of an answer whose n the client cannot read


def answer_cap(n: int | None, max_image_bytes: int) -> int:
    """Bytes a 2xx body may have: n images as base64, and the JSON around them."""
    count = n if n is not None and 1 <= n <= _MAX_N else _MAX_N
    return count * math.ceil(max_image_bytes * 4 / 3) + _JSON_ROOM


class TooLarge(Exception):
    """A body went past its cap; the connection was closed."""

    def __init__(self, cap: int):
        super().__init__(f"larger than its cap of {cap / MB:.1f} MB")
        self.cap = cap


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytearray:
    """The whole body, if it is at most `cap` bytes; else TooLarge, the connection closed.

    A Content-Length over the cap is refused before reading; a chunked body is counted as it
    comes, so memory never holds more than the cap (and one chunk)."""
    if resp.content_length is not None and resp.content_length > cap:
        resp.close()
        raise TooLarge(cap)
    body = bytearray()
    async for chunk in resp.content.iter_any():
        if len(body) + len(chunk) > cap:
            resp.close()
            raise TooLarge(cap)
        body += chunk
    return body


async def read_prefix(resp: aiohttp.ClientResponse, cap: int = ERROR_BODY_CAP) -> bytes:
    """At most `cap` bytes of a body whose start is all that matters (an error page); the
    connection is closed when there was more."""
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk[: cap - len(body)]
        if len(body) >= cap:
            resp.close()
            break
    return bytes(body)
