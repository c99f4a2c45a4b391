"""Sequence batching for the streaming graphs: the chunks of several streams as one ONNX Runtime call.

Each stream of a batch runs funasr's own streaming `generate` on a thread of its own (`Lockstep`); the two
`session.run` calls inside it (the chunk encoder and the chunk decoder, `onnx_streaming`) are parked until
every stream of the batch has reached one, then the parked calls of one graph whose inputs have the same shapes
(equal cache lengths: streams past their first few chunks) run as one call with the streams stacked on axis 0,
and each stream takes its own row back. A graph answers a stacked row exactly as it answers that row alone
(checked at export, `onnx_engine.check_batch_axis`), so text is unchanged; calls that match no other run alone.
"""

from __future__ import annotations

import numpy as np

from model_procs.lockstep import Lockstep


class GatheredSessions:
    def __init__(self) -> None:
        self.lockstep = Lockstep(lambda session, feed: session.run(None, feed), self.run_together)
        self.stacked_calls = 0   # calls that ran several streams at once (for tests and the benchmark)

    def wrap(self, session) -> "ParkedSession":
        return ParkedSession(session, self.lockstep)

    def run_together(self, calls: list[dict]) -> list[list[np.ndarray]]:
        """Parked `session.run` calls, grouped by session and input shapes, each group as one stacked call."""
        groups: dict[tuple, list[int]] = {}
        for index, call in enumerate(calls):
            shapes = tuple((name, array.shape) for name, array in call["feed"].items())
            groups.setdefault((id(call["session"]), shapes), []).append(index)
        answers: list = [None] * len(calls)
        for indices in groups.values():
            session, names = calls[indices[0]]["session"], calls[indices[0]]["feed"]
            if len(indices) == 1:
                answers[indices[0]] = session.run(None, names)
                continue
            self.stacked_calls += 1
            outputs = session.run(None, {name: np.concatenate([calls[i]["feed"][name] for i in indices])
                                         for name in names})
            for row, index in enumerate(indices):
                answers[index] = [output[row:row + 1] for output in outputs]
        return answers


class ParkedSession:
    """Stands in for an `onnxruntime.InferenceSession` where funasr's streaming code runs it."""

    def __init__(self, session, lockstep: Lockstep) -> None:
        self.session, self.lockstep = session, lockstep

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.lockstep.call(session=self.session, feed=feed)
