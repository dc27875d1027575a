"""Object-storage inputs (s3://, gs://, az://, ...) through fsspec and the filesystem of each
store (s3fs, gcsfs, adlfs: optional extras). Credentials, region and endpoint are whatever the
store's SDK reads (for S3: the AWS_* variables, ~/.aws, an instance role; AWS_ENDPOINT_URL
for MinIO or a test server); the manifest never holds them.

fsspec's blocking calls run in a thread, each bounded by the timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.core.plan import Remote
from pipeline.inputs.validators import FetchError, Validators

# The extra that brings each scheme's filesystem: `pip install 'editbatch[s3]'`.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
EXTRAS["abfss"] = "azure"


def filesystem(scheme: str) -> Any:
    """fsspec's filesystem for the scheme (one per process: its client is costly to make),
    with no listing cached by an earlier run in this process, which could hide a changed
    object. FetchError names the extra when it is missing."""
    try:
        import fsspec

        fs = fsspec.filesystem(scheme)
        fs.invalidate_cache()
        return fs
    except (ImportError, ValueError) as exc:
        extra = EXTRAS.get(scheme)
        fix = (
            f"install it: pip install 'editbatch[{extra}]'"
            if extra
            else "use http(s)://, s3://, gs:// or az:// URLs, or a local path"
        )
        raise FetchError(f"{scheme}:// cannot be read here ({exc}); {fix}") from None


class ObjectReader:
    def __init__(self, *, timeout_s: float, max_bytes: int):
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._filesystems: dict[str, Any] = {}

    def _fs(self, ref: Remote) -> Any:
        scheme = ref.scheme
        if scheme not in self._filesystems:
            self._filesystems[scheme] = filesystem(scheme)
        return self._filesystems[scheme]

    async def _call(self, ref: Remote, method: str) -> Any:
        fs = self._fs(ref)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(getattr(fs, method), ref.url), self.timeout_s
            )
        except FileNotFoundError:
            raise FetchError(f"{ref}: no such object", missing=True) from None
        except PermissionError as exc:
            raise FetchError(
                f"{ref}: access refused ({exc}); check the store's credentials"
            ) from None
        except TimeoutError:
            raise FetchError(
                f"{ref}: timed out after {self.timeout_s:g} s", retryable=True
            ) from None
        except OSError as exc:
            raise FetchError(f"{ref}: {exc}", retryable=True) from None

    async def stat(self, ref: Remote) -> Validators:
        info = await self._call(ref, "info")
        if info.get("type") == "directory":
            raise FetchError(f"{ref}: is a folder, not an object", missing=True)
        return validators_of(info)

    async def fetch(self, ref: Remote) -> tuple[bytes, Validators]:
        before = await self.stat(ref)
        if before.size is not None and before.size > self.max_bytes:
            raise FetchError(
                f"{ref}: is {before.size / 2**20:.1f} MB, more than the "
                f"{self.max_bytes // 2**20} MB an input may have"
            )
        data = await self._call(ref, "cat_file")
        if len(data) > self.max_bytes:
            raise FetchError(f"{ref}: more than the {self.max_bytes // 2**20} MB allowed")
        return data, Validators(len(data), before.etag, before.last_modified)


def validators_of(info: dict) -> Validators:
    """Validators from an fsspec `info()`: s3fs says ETag and LastModified, gcsfs etag and
    updated, adlfs etag and last_modified."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    modified = info.get("LastModified") or info.get("last_modified") or info.get("updated")
    size = info.get("size")
    return Validators(
        size=size if isinstance(size, int) else None,
        etag=str(etag) if etag else None,
        last_modified=str(modified) if modified else None,
    )
