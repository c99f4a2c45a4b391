"""The fleet as its nodes report it: pure functions over the agents' last states (no Ray, no locks)."""

from __future__ import annotations

import msgspec

from supervisor.fleet.agent import NodeState
from supervisor.fleet.placement import Candidate
from supervisor.jobs import LoadJob
from supervisor.snapshot import system_info
from wire.views import ModelView, SystemInfo


def model_ids(states: dict[str, NodeState]) -> list[str]:
    """The models the nodes answer for (every node has the same table: the config and the registry)."""
    return list(dict.fromkeys(m for state in states.values() for m in state.snapshot_models))


def merged_view(model_id: str, states: dict[str, NodeState], job: LoadJob | None, lost: str | None) -> ModelView:
    """One model across the nodes: its replicas from every node that runs it, each with its `node`. The last
    error stays after recovery, as on one box: a failed placement, else the node lost, else the node's own."""
    views = [(node_id, s.snapshot_models[model_id]) for node_id, s in states.items() if model_id in s.snapshot_models]
    running = [(n, v) for n, v in views if v.replicas]
    base = next((v for _, v in views if v.loaded), None) or next((v for _, v in views if v.loading), None) \
        or views[0][1]
    replicas = [msgspec.structs.replace(r, node=n) for n, v in running for r in v.replicas]
    placing = job is not None and not job.done
    return msgspec.structs.replace(
        base, replicas=replicas, pid=replicas[0].pid if replicas else None,
        memory_usage_mb=round(sum(v.memory_usage_mb for _, v in running), 1),
        total_requests=sum(v.total_requests for _, v in views), restarts=sum(v.restarts for _, v in views),
        live_sessions=sum(v.live_sessions for _, v in views),
        last_error=(job.error if job is not None else None) or lost or base.last_error,
        loading=base.loading or placing, status="loading" if not base.loaded and placing else base.status)


def serving_nodes(model_id: str, states: dict[str, NodeState]) -> list[str]:
    """Nodes where the model is loaded, the fewest requests in flight first."""
    serving = [(sum(r.in_flight for r in s.snapshot_models[model_id].replicas), node_id)
               for node_id, s in states.items()
               if model_id in s.snapshot_models and s.snapshot_models[model_id].loaded]
    return [node_id for _, node_id in sorted(serving)]


def candidates(model_id: str, states: dict[str, NodeState], labels: dict[str, dict[str, str]],
               evict_idle: bool) -> list[Candidate]:
    """Each node as placement sees it; what it would evict is its idle models that are not required."""
    found = []
    for node_id, state in states.items():
        views = state.snapshot_models
        idle = sum(r.memory_unique_mb for m, v in views.items() if m != model_id and v.loaded and not v.required
                   for r in v.replicas if r.in_flight == 0)
        found.append(Candidate(node_id, labels.get(node_id, {}), state.capacity.free_mb,
                               state.capacity.need_mb.get(model_id, 0.0), idle if evict_idle else 0.0,
                               views.get(model_id)))
    return found


def fleet_totals(nodes: list[SystemInfo], started_at: float) -> SystemInfo:
    """The fleet's totals. Nodes that share a machine (a one-machine test cluster) each count its memory."""
    return msgspec.structs.replace(
        system_info(started_at), total_memory_gb=round(sum(n.total_memory_gb for n in nodes), 2),
        available_memory_gb=round(sum(n.available_memory_gb for n in nodes), 2),
        cpu_cores=sum(n.cpu_cores for n in nodes), memory_limit=None)
