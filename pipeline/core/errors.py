"""The exception tree, and what the runner does with each branch.

    EditbatchError
    ├── UsageError            the manifest, an input or the command line is invalid -> exit 2
    │   ├── ManifestError     carries every located Problem at once
    │   ├── LedgerCorrupt     a ledger line other than the last does not parse
    │   └── LedgerLocked      another live process holds the ledger's lock
    ├── LedgerUnwritable      an append to the ledger failed (disk full, I/O error) -> stop the
    │                         run, exit 4 (the ledger stays consistent: a rerun resumes)
    └── AttemptError          one HTTP attempt did not give usable images
        ├── RetryableError    408, 409, 5xx, timeouts, resets, unusable 200 bodies -> retry
        │                     (an unusable 200 is `billed`: its cost is recorded all the same)
        │   ├── RateLimited   429 rate limit -> pause the whole pool, then retry
        │   └── AnswerRejected a usable answer refused (drift over output.max_drift) -> retry;
        │                     billed, and the model's doing: never a sign of an outage
        ├── PermanentError    400, 413, 422 (moderation, bad parameters) -> fail the item
        └── FatalError        401, 403, 404, 429 quota spent -> abort the run (exit 4)

Messages say where the problem is and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class EditbatchError(Exception):
    """Base of every error editbatch raises on purpose."""


class UsageError(EditbatchError):
    """Invalid manifest, input file or command line: nothing is sent, exit 2."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located validation problem: where it is, what is wrong, how to fix it."""

    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text}; {self.fix}" if self.fix else text


class ManifestError(UsageError):
    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class LedgerCorrupt(UsageError):
    """A ledger line that is not the last one does not parse."""


class LedgerLocked(UsageError):
    """A second run on the same ledger; names the process that holds it."""


class LedgerUnwritable(EditbatchError):
    """The ledger cannot be appended to: an environment condition no retry fixes (exit 4)."""


class AttemptError(EditbatchError):
    """One attempt failed. Carries what the server said, for the ledger."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        type: str | None = None,  # the API's own field name
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        transport: str | None = None,
        headers: dict[str, str] | None = None,
        billed: bool = False,
        usage: object = None,
    ):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.transport = transport
        # the response's rate-limit and retry-after headers, for the rate controller
        self.headers: dict[str, str] = dict(headers or {})
        # A 2xx answer that could not be used was billed all the same: the usage it carried
        # (None when none could be read), and what the engine charged for it.
        self.billed = billed
        self.usage = usage
        self.charge: object = None  # cost.usage.Charge, set by the engine for billed attempts

    def describe(self) -> dict:
        """The error as the ledger records it (no class: the caller adds that)."""
        return {
            "http_status": self.http_status,
            "type": self.type,
            "code": self.code,
            "message": self.message,
        }


class RetryableError(AttemptError):
    """Worth another attempt after a backoff."""


class RateLimited(RetryableError):
    """A 429 rate limit: the whole pool waits for the server's retry-after."""


class AnswerRejected(RetryableError):
    """The provider answered and billed, but the answer is not good enough for the item (its
    drift is over `output.max_drift`). Retried and counted against max_attempts; the gates saw
    the attempt succeed, so it never slows the pool or opens the outage circuit."""

    def __init__(
        self,
        message: str,
        *,
        usage: object,
        charge: object,  # cost.usage.Charge of the answer
        drift: float | None = None,
        request_id: str | None = None,
    ):
        super().__init__(
            message,
            http_status=200,
            type="answer_rejected",
            request_id=request_id,
            billed=True,
            usage=usage,
        )
        self.charge = charge
        self.drift = drift


class PermanentError(AttemptError):
    """The request itself is wrong for the API: the item fails, no retry."""


class FatalError(AttemptError):
    """No retry can fix this (bad key, no quota, unknown model): the run aborts."""
