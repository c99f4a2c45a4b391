"""A handle to cancel a loop's `call_later`: kept by the model state (`supervisor.replica`) as well as by the
arbiter's parts, so it lives beside them rather than in the arbiter."""

from __future__ import annotations


class Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
