"""`${NAME}` references in configuration values (the extra headers of an endpoint): their
syntax, the names they read, and their values from an environment at run time. A value is
stored and recorded as its template, never resolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(r"\$\{(" + NAME + r")\}")
_OPENING = re.compile(r"\$\{")


class MissingVariable(KeyError):
    """A `${NAME}` whose variable is not set (or empty)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def references(template: str) -> list[str]:
    """The variable names a template reads, in order."""
    return _REFERENCE.findall(template)


def template_problem(template: str) -> str | None:
    """Why a template cannot be read (a `${` that does not close on a variable name), or None."""
    for opening in _OPENING.finditer(template):
        if not _REFERENCE.match(template, opening.start()):
            rest = template[opening.start() : opening.start() + 20]
            return f"{rest!r} is not a ${{NAME}} reference (a letter or _, then letters, digits, _)"
    return None


def expand(template: str, environ: Mapping[str, str]) -> str:
    """The template with each `${NAME}` replaced by its variable's value; MissingVariable for
    the first that is unset or empty."""

    def value(match: re.Match[str]) -> str:
        found = environ.get(match.group(1))
        if not found:
            raise MissingVariable(match.group(1))
        return found

    return _REFERENCE.sub(value, template)
