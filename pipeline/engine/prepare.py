"""Turning an item into the bytes of its request, and a response into output files.

Preparing reads each input once (in a thread), hashes what it read (the key is the key of the
files), turns a photo with an EXIF rotation upright, converts a mask without alpha once per
run, and prices the request's worst case for the budget. Writing stores each returned image
atomically under its output name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pipeline.api.bodies import ImageRequest
from pipeline.core.fingerprint import FileDigest, item_key, read_regular
from pipeline.core.plan import Item, Location, Plan, Remote
from pipeline.cost.estimate import estimate_item
from pipeline.cost.pricing import Price, TokenCounts
from pipeline.cost.usage import Charge, charge
from pipeline.inputs.cache import Fetched
from pipeline.inputs.fetch import Fetcher
from pipeline.media.images import (
    content_type,
    dimensions,
    has_alpha_channel,
    mask_bytes,
    sniff_format,
)
from pipeline.media.orient import upright
from pipeline.outputs.files import extension, render_stem
from pipeline.outputs.store import OutputStore, as_store

_MASK_CACHE_SIZE = 64


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: the memory-bound test
class Prepared:
    item: Item
    key: str
    cache_key: str  # the request's alone (without output.mask_mode/size): the answer cache's
    request: ImageRequest
    inputs: list[dict]  # ledger `inputs` entries
    worst_usd: float  # reserved against the budget before each attempt (0 when unpriced)
    expected_usd: float | None  # recorded as the cost when a proxy returns no usage
    expected_counts: TokenCounts
    worst_counts: TokenCounts  # with worst_usd: charged for a billed answer without usage

    def charge(self, usage: object, price: Price | None, *, usable: bool) -> Charge:
        """What an answer the provider billed is recorded to cost (see cost.usage)."""
        return charge(
            usage,
            price,
            usable=usable,
            expected=(self.expected_usd, self.expected_counts),
            worst=(self.worst_usd if price is not None else None, self.worst_counts),
        )

    approximate: bool = False  # the expected cost scales a free size's tokens by area


class Preparer:
    def __init__(self, plan: Plan, prices: dict[str, Price], fetcher: Fetcher | None = None):
        self.base = plan.manifest_path.parent
        self._base_prefix = os.path.join(os.fspath(self.base), "")  # with its trailing "/"
        self.prices = prices
        self.fetcher = fetcher  # for remote inputs; None when the plan has none
        self._masks: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()

    async def prepare(self, item: Item) -> Prepared:
        fetched: dict[str, Fetched] = {}
        for ref in (*item.images, item.mask):
            if isinstance(ref, Remote) and ref.url not in fetched:
                if self.fetcher is None:
                    raise OSError(f"{ref}: remote inputs need a fetcher")
                fetched[ref.url] = await self.fetcher.local(ref)
        return await asyncio.to_thread(self._prepare, item, fetched)

    def _prepare(self, item: Item, fetched: dict[str, Fetched]) -> Prepared:
        files, digests, dims = [], [], []
        records = []
        for path in item.images:
            data, digest, record = self._read(path, fetched, "image")
            records.append(record)
            fmt = sniff_format(data[:16])
            if fmt is None:
                raise ValueError(f"{path.name} is not a PNG, JPEG or WEBP image")
            sent = upright(data, fmt)  # the same bytes unless EXIF says it is turned
            dims.append(dimensions(sent, fmt))
            files.append((part_name(path), sent, content_type(fmt)))
            digests.append(digest)
        inputs = records
        mask = None
        mask_sha = None
        if item.mask is not None:
            original, digest, record = self._read(item.mask, fetched, "mask")
            mask_sha = digest.sha256
            inputs.append(record)
            sent_name = part_name(Path(f"{item.mask.stem}.png"))
            mask = (sent_name, self._mask(Path(digest.path), digest, original))
        shas = [d.sha256 for d in digests]
        key = item_key(item, shas, mask_sha)
        estimate = estimate_item(item, dims, self.prices)
        request = ImageRequest(
            params=dict(item.params), prompt=item.prompt, images=files, mask=mask
        )
        return Prepared(
            item=item,
            key=key,
            cache_key=item_key(item, shas, mask_sha, with_finish=False),
            request=request,
            inputs=inputs,
            worst_usd=estimate.worst_usd or 0.0,
            expected_usd=estimate.expected_usd,
            expected_counts=estimate.expected,
            worst_counts=estimate.worst,
            approximate=estimate.approximate,
        )

    def _read(
        self, location: Location, fetched: dict[str, Fetched], role: str
    ) -> tuple[bytes, FileDigest, dict]:
        """The input's bytes, their digest (of the local copy), and its ledger entry."""
        if isinstance(location, Remote):
            copy = fetched[location.url]
            data, digest = _read(copy.path)
            if digest.sha256 != copy.sha256:
                raise OSError(f"{location}: its cached copy {copy.path} changed; delete it")
            return data, digest, copy.record(location, role)
        data, digest = _read(location)
        return data, digest, self._record(digest, role)

    def _record(self, digest: FileDigest, role: str) -> dict:
        record = digest.record(role)
        path = os.fspath(digest.path)
        if path.startswith(self._base_prefix):  # inside the manifest's folder: relative
            record["path"] = Path(path[len(self._base_prefix) :]).as_posix()
        return record

    def _mask(self, path: Path, digest: FileDigest, original: bytes) -> bytes:
        """The mask to send: the bytes already read when they are a PNG with alpha (the usual
        case: no second read), else converted once per run (an LRU, so a mask shared by many
        items is converted once and 20,000 distinct masks do not pile up in memory)."""
        if has_alpha_channel(original[:26]):
            return original
        cache_key = (os.fspath(path), digest.bytes, digest.mtime_ns)
        if cache_key in self._masks:
            self._masks.move_to_end(cache_key)
            return self._masks[cache_key]
        data = mask_bytes(path)
        self._masks[cache_key] = data
        if len(self._masks) > _MASK_CACHE_SIZE:
            self._masks.popitem(last=False)
        return data


_UNSAFE_IN_PART_NAME = re.compile(r'[\x00-\x1f\x7f"\\]')


def part_name(path: Path) -> str:
    """The file name a multipart part carries: the file's own, except that bytes that are not
    UTF-8 (a glob can match such a name), quotes and control characters become `_`, so that
    it can always be sent (the API reads only the part's content type)."""
    name = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _UNSAFE_IN_PART_NAME.sub("_", name.replace("\ufffd", "_")) or "image"


def _read(path: Path) -> tuple[bytes, FileDigest]:
    data, st = read_regular(path)  # a FIFO put in an image's place: refused
    return data, FileDigest(path, len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())


async def write_outputs(
    plan: Plan,
    item: Item,
    images: list[bytes],
    folder: str = "",
    *,
    store: OutputStore | None = None,
) -> list[dict]:
    """Store each image under the item's output name (in `folder`, e.g. "answers/", inside the
    output folder, local or on object storage); ledger `outputs` entries.

    The extension follows the bytes (a proxy may ignore output_format), so a file's name never
    lies about its content; only `output.mask_mode: strict` or `size: input` re-encode them.
    """
    store = store or as_store(plan.output.dir)
    stem = render_stem(plan.output.name, item)
    records = []
    for number, data in enumerate(images, start=1):
        fmt = sniff_format(data[:16]) or item.output_format
        suffix = f"-{number}" if len(images) > 1 else ""
        relpath = f"{folder}{stem}{suffix}.{extension(fmt)}"
        records.append(await asyncio.to_thread(store.write, relpath, data))
    return records
