"""The model lifecycle state machine: one enum and the table of legal moves."""

from __future__ import annotations

import enum


class ModelStatus(str, enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"
    FAILED = "failed"


_S = ModelStatus
TRANSITIONS: dict[ModelStatus, frozenset[ModelStatus]] = {
    _S.UNLOADED: frozenset({_S.LOADING}),
    # loading→loaded also covers a failed force_reload that falls back to the process still serving
    _S.LOADING: frozenset({_S.LOADED, _S.FAILED, _S.UNLOADED}),
    _S.LOADED: frozenset({_S.LOADING, _S.UNLOADING, _S.FAILED}),
    _S.UNLOADING: frozenset({_S.UNLOADED}),
    _S.FAILED: frozenset({_S.LOADING, _S.UNLOADED}),
}


class IllegalTransition(RuntimeError):
    """A bug in the supervisor: code asked for a move the table does not allow."""


def check_transition(old: ModelStatus, new: ModelStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{old.value} -> {new.value} is not a legal lifecycle move")
