"""Batch a per-item funasr loop without rewriting it: each item runs funasr's own code on a thread of its own, and
the one heavy call inside it waits for the other items' threads to reach theirs, then runs once for all of them.

CT-Punc's `inference` takes one text and walks it in mini-sentences, carrying the unfinished sentence into the
next forward; batching that by hand would copy its loop. Instead the model's forward is replaced by
`Lockstep.call`: a thread that reaches it parks its arguments; when every item still running has parked (or
finished), the last one runs `forward_many` on all the parked arguments at once and hands each thread its own
result. Items that need more forwards than others simply run the later steps in smaller batches.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class Lockstep:
    def __init__(self, single: Callable[..., Any], forward_many: Callable[[list[dict]], list[Any]]) -> None:
        self.single = single                  # the forward as it was: a call made outside a run
        self.forward_many = forward_many      # keyword arguments of several calls -> their results, in order
        self.turn = threading.Condition()
        self.mine = threading.local()
        self.running = 0
        self.parked: dict[int, dict] = {}
        self.results: dict[int, Any] = {}

    def run(self, work: Callable[[Any], Any], items: list) -> list[Any]:
        """`work(item)` for every item, on threads of their own; an item's exception is its result."""
        outcomes: list[Any] = [None] * len(items)

        def one(index: int) -> None:
            self.mine.index = index
            try:
                outcomes[index] = work(items[index])
            except Exception as exc:  # noqa: BLE001 (the item's answer is its error)
                log.exception("an item of a batch of %d failed", len(items))
                outcomes[index] = exc
            finally:
                with self.turn:
                    self.running -= 1
                    self._release_if_all_parked()

        self.running = len(items)
        threads = [threading.Thread(target=one, args=(i,), name=f"lockstep-{i}") for i in range(len(items))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes

    def call(self, **kwargs: Any) -> Any:
        """The stand-in for the model's forward."""
        index = getattr(self.mine, "index", None)
        if index is None:
            return self.single(**kwargs)
        with self.turn:
            self.parked[index] = kwargs
            self._release_if_all_parked()
            while index not in self.results:
                self.turn.wait()
            result = self.results.pop(index)
        if isinstance(result, BaseException):
            raise result
        return result

    def _release_if_all_parked(self) -> None:
        """With the condition held: once every running item waits here, run their forwards as one call."""
        if not self.parked or len(self.parked) < self.running:
            return
        parked, self.parked = self.parked, {}
        order = sorted(parked)
        try:
            answers = self.forward_many([parked[i] for i in order])
        except Exception as exc:  # noqa: BLE001 (each item sees the batch's error)
            answers = [exc] * len(order)
        self.results.update(zip(order, answers))
        self.turn.notify_all()
