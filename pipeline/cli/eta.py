"""Time left in a run, for the progress displays: the pending items over a smoothed rate of
finished ones, said in words ("about 4 min left"). The rate is an exponentially weighted
average with a half-life in seconds, so one slow answer or a burst of fast ones does not make
the figure jump; the words are rounded coarser as the time grows. Time is passed in.
"""

from __future__ import annotations

HALF_LIFE_S = 60.0


class Eta:
    def __init__(self, started: float, half_life_s: float = HALF_LIFE_S):
        self.half_life_s = half_life_s
        self._last_time = started
        self._last_finished = 0
        self._rate: float | None = None  # items per second, smoothed

    def observe(self, finished: int, now: float) -> None:
        """The count of items finished (done or failed) in this run, at `now`."""
        elapsed = now - self._last_time
        if elapsed <= 0:
            return
        sample = (finished - self._last_finished) / elapsed
        if self._rate is None:
            if finished == 0:
                return  # no rate before the first item finishes: keep the start as the origin
            self._rate = sample
        else:
            weight = 1.0 - 0.5 ** (elapsed / self.half_life_s)
            self._rate += weight * (sample - self._rate)
        self._last_time, self._last_finished = now, finished

    @property
    def rate_per_min(self) -> float | None:
        return None if self._rate is None else self._rate * 60.0

    def seconds_left(self, pending: int) -> float | None:
        if pending == 0:
            return 0.0
        if not self._rate:
            return None
        return pending / self._rate

    def text(self, pending: int) -> str:
        """`about 4 min left`, or "" when nothing is left or no item has finished yet."""
        if pending == 0:
            return ""
        seconds = self.seconds_left(pending)
        return "time left: estimating" if seconds is None else f"{left_words(seconds)} left"


def left_words(seconds: float) -> str:
    """Seconds as a person reads a wait: coarser as it grows, so the figure does not flicker."""
    if seconds < 60:
        return "under a minute"
    minutes = seconds / 60
    if minutes < 10:
        return f"about {round(minutes)} min"
    if minutes < 60:
        return f"about {round(minutes / 5) * 5} min"
    hours, rest = divmod(round(minutes / 10) * 10, 60)
    return f"about {hours} h" + (f" {rest:02d} min" if rest else "")
