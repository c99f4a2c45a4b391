"""Where a fleet puts a model: the same admission rules as one box, per node.

A node that already holds the model's files (it loaded the model before: its cache has them) or its pages (it
serves it, or keeps it warm) comes first; else the node with the most memory free that fits the model's
estimate; a node where evicting idle models would make room comes after those that fit as they are. A model
pinned with `nodes = [...]` goes only to those (Ray node ids, id prefixes, or `key=value` labels).
"""

from __future__ import annotations

from typing import NamedTuple

from wire.errors import ErrorCode, SupervisorError
from wire.views import ModelView


class Candidate(NamedTuple):
    node_id: str
    labels: dict[str, str]
    free_mb: float
    need_mb: float
    evictable_mb: float               # idle models that are not required: what the node would evict for a load
    view: ModelView | None            # the model as that node sees it

    @property
    def holds_it(self) -> bool:
        metrics = self.view.metrics if self.view is not None else None
        return self.view is not None and (self.view.loaded or bool(self.view.warm_mb) or
                                          bool(metrics and metrics.loads))


def pinned_to(candidate: Candidate, nodes: list[str]) -> bool:
    return not nodes or any(candidate.node_id.startswith(n) or
                            ("=" in n and candidate.labels.get(n.split("=", 1)[0]) == n.split("=", 1)[1])
                            for n in nodes)


def place(model_id: str, candidates: list[Candidate], nodes: list[str]) -> str:
    """The node to load `model_id` on; INSUFFICIENT_MEMORY (507) naming each node's free memory when none fits."""
    allowed = [c for c in candidates if pinned_to(c, nodes)]
    if not allowed:
        raise SupervisorError(ErrorCode.INSUFFICIENT_MEMORY, f"No node may hold {model_id}",
                              f"it is pinned to nodes = {nodes}, and no live node of the fleet matches "
                              f"(live: {', '.join(c.node_id[:12] for c in candidates) or 'none'})",
                              model_type=model_id)
    fitting = [c for c in allowed if c.free_mb >= c.need_mb]
    evicting = [c for c in allowed if c not in fitting and c.free_mb + c.evictable_mb >= c.need_mb]
    for pool in (fitting, evicting):
        if pool:
            return max(pool, key=lambda c: (c.holds_it, c.free_mb)).node_id
    free = ", ".join(f"{c.node_id[:12]}: {c.free_mb:.0f} MB free of {c.need_mb:.0f} MB needed" for c in allowed)
    raise SupervisorError(ErrorCode.INSUFFICIENT_MEMORY, f"Not enough memory on any node to load {model_id}",
                          f"{free}; unload a model, add a node, or lower the model's footprint",
                          model_type=model_id, nodes={c.node_id: round(c.free_mb) for c in allowed})
