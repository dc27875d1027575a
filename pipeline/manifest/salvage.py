"""One round of errors: after the schema's problems are told, the manifest is checked again
without what was wrong, so the later checks (ids, expansion, files) still run and a duplicate
id is reported beside the unknown key, a wrong-size mask beside the empty prompt.

What is set aside: an unknown or misplaced key; a bad value (it takes its default); an item
that cannot be read even so. Nothing set aside ever reaches a Plan: any problem stops the load.
"""

from __future__ import annotations

import re

from pipeline.core.errors import Problem
from pipeline.manifest.problems import without_tags


class Salvage:
    """A copy of the manifest's data from which wrong parts are set aside, pass by pass."""

    def __init__(self, data: dict):
        self._data = dict(data)
        raw_items = data.get("items")
        self._items: dict[int, object] = (
            dict(enumerate(raw_items)) if isinstance(raw_items, list) else {}
        )
        self._order = list(self._items)  # original indices of the items now kept
        self.dropped: dict[int, set[str]] = {}  # original index -> keys set aside

    def data(self) -> dict:
        self._order = list(self._items)
        return {**self._data, "items": [self._items[i] for i in self._order]}

    def kept(self) -> list[int]:
        """The original index of each item the last `data()` holds, in order."""
        return list(self._order)

    def set_aside(self, errors: list[dict]) -> None:
        for error in errors:
            loc = without_tags(error["loc"])
            if not loc:
                continue
            if loc[0] == "items":
                self._item(loc)
            elif len(loc) == 1:
                if loc[0] == "version":
                    self._data["version"] = 1
                else:  # an unknown top-level key, or a section of the wrong type
                    self._data.pop(loc[0], None)
            else:
                section = self._data.get(loc[0])
                if isinstance(section, dict):
                    section = dict(section)
                    section.pop(loc[1], None)
                    self._data[loc[0]] = section
                else:
                    self._data.pop(loc[0], None)

    def _item(self, loc: tuple) -> None:
        if len(loc) < 2 or not isinstance(loc[1], int):
            self._items.clear()  # items: is not a list
            return
        if loc[1] >= len(self._order):
            return
        index = self._order[loc[1]]
        item = self._items.get(index)
        key = loc[2] if len(loc) > 2 else None
        if not isinstance(item, dict) or key is None or key in self.dropped.get(index, ()):
            self._items.pop(index, None)  # nothing left to check of it
            return
        self._items[index] = {k: v for k, v in item.items() if k != key}
        self.dropped.setdefault(index, set()).add(str(key))


_INDEX = re.compile(r"items\[(\d+)\]")


def told_already(problems: list[Problem], dropped: dict[int, set[str]]) -> list[Problem]:
    """Later problems minus those about a key that was set aside (its own problem is told):
    an item whose empty prompt was set aside is not also said to have no prompt."""
    kept = []
    for problem in problems:
        match = _INDEX.match(problem.where)
        keys = dropped.get(int(match.group(1)), ()) if match else ()
        if any(key in problem.where or key in problem.message for key in keys):
            continue
        kept.append(problem)
    return kept
