"""An answer's last step: its outputs (and, for strict items, the model's own answer) written
whole, then its verdict line with what it cost. Outputs before verdicts: a crash between the
two leaves an output without a line, and the item runs again.
"""

from __future__ import annotations

from pipeline.api.client import EditResponse
from pipeline.core.plan import Plan
from pipeline.cost.usage import Charge
from pipeline.engine.finishing import ANSWERS
from pipeline.engine.prepare import Prepared, write_outputs
from pipeline.engine.record import Recorder
from pipeline.engine.stops import Stops
from pipeline.media.finish import Finished
from pipeline.outputs.store import OutputStore


class Delivery:
    def __init__(self, *, plan: Plan, store: OutputStore, recorder: Recorder, stops: Stops):
        self.plan = plan
        self.store = store
        self.recorder = recorder
        self.stops = stops

    async def deliver(
        self,
        prepared: Prepared,
        response: EditResponse,
        finished: Finished,
        latency: float,
        attempt: int,  # 0: from the cross-run cache, nothing paid
        charge: Charge,
    ) -> bool:
        """Write the outputs and the `succeeded` line; True when both are done. A failed write
        records `failed` with the charge (the answer was billed all the same)."""
        item = prepared.item
        try:
            outputs = await write_outputs(self.plan, item, finished.images, store=self.store)
            answers = None
            if finished.answers is not None:  # strict: what the model drew, for review
                answers = await write_outputs(
                    self.plan, item, finished.answers, ANSWERS, store=self.store
                )
        except ValueError as exc:  # the output name leaves the folder (a symlink, say)
            await self._unsaved(
                prepared, response, attempt, charge, "permanent", f"cannot write the output: {exc}"
            )
            return False
        except OSError as exc:  # disk full, permissions: every item would fail the same way
            message = (
                f"cannot write outputs to {self.plan.output.dir}: {exc}; free space or fix "
                "permissions, then run again (this item stays pending)"
            )
            self.stops.stop("fatal", f"aborted: {message}")
            await self._unsaved(prepared, response, attempt, charge, "fatal", message)
            return False
        await self.recorder.succeeded(
            prepared,
            response,
            outputs,
            attempt=attempt,
            latency_s=latency,
            charge=charge,
            drift=finished.drift,
            cached=attempt == 0,
            answers=answers,
        )
        return True

    async def _unsaved(
        self,
        prepared: Prepared,
        response: EditResponse,
        attempt: int,
        charge: Charge,
        cls: str,
        message: str,
    ) -> None:
        await self.recorder.failed(
            prepared.item.id,
            prepared.key,
            cls,
            None,
            message,
            attempt,
            charge=charge,
            usage=response.usage,
            cause="output",
        )
