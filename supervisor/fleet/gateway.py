"""The fleet's facade: `SupervisorAPI` over the node agents, so the flows and every protocol adapter serve a
whole Ray cluster unchanged.

A watcher thread keeps the view: every `refresh_s` it lists Ray's nodes, starts an agent on a node that has none
(a named, detached actor pinned to it, so a restarted gateway finds the same agents and loses nothing), reads
each agent's state, and notices a node that died: its models are marked lost with a clear `last_error`, its
streams are gone, and its `required` and `preload` models are placed again on the nodes left, within the
restart budget. Loads go where `placement.place` says; orders go to a node that serves the model, least queued
first (a stream's to the node holding it), and a model no node serves is loaded where placement says first.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from supervisor.catalog import pick_model, resolve as resolve_models
from supervisor.config import Config
from supervisor.core import LoadTicket
from supervisor.fleet.agent import AgentRefusal, NodeAgent, NodeState
from supervisor.fleet.metrics import NodeMetrics
from supervisor.fleet.placement import Candidate, place
from supervisor.fleet.routing import OrderRouter
from supervisor.fleet.view import candidates, fleet_totals, merged_view, model_ids, serving_nodes
from supervisor.jobs import JobStatus, LoadJob, job_error
from supervisor.kinds import funasr_version
from supervisor.metrics import SupervisorMetrics
from supervisor.orders import Order
from supervisor.snapshot import Snapshot, job_view
from wire.errors import ErrorCode, SupervisorError, shown
from wire.views import CacheInfo, JobView, ModelView, SystemInfo, UnloadView

log = logging.getLogger(__name__)

NAMESPACE = "funasr-fleet"
STATE_TIMEOUT_S = 10.0


def agent_name(node_id: str) -> str:
    return f"funasr-agent-{node_id}"


class FleetSupervisor:
    def __init__(self, config: Config, cache_dir: Path, ray_address: str, refresh_s: float = 0.5) -> None:
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=ray_address, namespace=NAMESPACE, logging_level=logging.WARNING,
                     log_to_driver=False)
        self.config, self.settings, self.cache_dir = config, config.server, Path(cache_dir)
        self.started_at, self.version = time.time(), funasr_version()
        self.refresh_s = refresh_s
        self.agents: dict[str, Any] = {}          # node id -> actor handle
        self.labels: dict[str, dict[str, str]] = {}
        self.states: dict[str, NodeState] = {}
        self.lost: dict[str, str] = {}            # model -> why its node's processes went (its last_error)
        self.jobs: dict[str, LoadJob] = {}
        self.placing: dict[str, LoadJob] = {}     # model -> the load in flight
        self.loading_on: dict[str, str] = {}      # model -> the node its load in flight was placed on
        self.restarts: dict[str, list[float]] = {}
        self._waited: set[str] = set()            # models queued on every serving node at the last refresh
        self._lock = threading.RLock()
        self._published: Snapshot | None = None
        self._refreshing = threading.Lock()   # one refresh at a time: the watcher's, or after a load
        self._closed = threading.Event()
        self._work = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fleet")
        self._watcher = threading.Thread(target=self._watch, name="fleet-watcher", daemon=True)
        self.router = OrderRouter(self)
        self.metrics = SupervisorMetrics(lambda: self.snapshot)
        self.metrics.registry.register(NodeMetrics(self.node_states))

    # -- life ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        self._watcher.start()
        for model_id, config in self.config.models.items():
            if (config.required or config.preload) and not self.serving(model_id):
                self._work.submit(self._quietly, model_id)

    def close(self) -> None:
        """Stop watching; the agents and their models stay (a restarted gateway takes them up again)."""
        self._closed.set()
        self._work.shutdown(wait=False, cancel_futures=True)

    def shutdown_agents(self) -> None:
        """Stop every agent's supervisor (its models unloaded) and the agents: the fleet's own teardown."""
        self.close()
        for node_id, agent in list(self.agents.items()):
            try:
                self.ray.get(agent.close.remote(), timeout=60)
                self.ray.kill(agent)
            except Exception as exc:  # noqa: BLE001 (a node already gone has nothing to stop)
                log.warning("fleet: agent on %s did not stop cleanly: %s", node_id[:12], exc)

    def is_alive(self) -> bool:
        return not self._closed.is_set() and self._watcher.is_alive()

    def where(self) -> str:
        return f"fleet gateway: {len(self.states)} nodes answering"

    # -- the view ------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._closed.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 (the watcher must outlive one bad refresh)
                log.exception("fleet: refresh failed")

    def refresh(self) -> None:
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        alive = {n["NodeID"]: n for n in self.ray.nodes() if n.get("Alive")}
        for node_id, node in alive.items():
            if node_id not in self.agents:
                self.agents[node_id] = self._agent(node_id, node)
                self.labels[node_id] = dict(node.get("Labels") or {})
        for node_id in [n for n in self.agents if n not in alive]:
            self._node_lost(node_id, "Ray reports the node dead")
        refs = {node_id: agent.state.remote() for node_id, agent in self.agents.items()}
        states = {}
        for node_id, ref in refs.items():
            try:
                states[node_id] = self.ray.get(ref, timeout=STATE_TIMEOUT_S)
            except self.ray.exceptions.GetTimeoutError:
                if node_id in self.states:
                    states[node_id] = self.states[node_id]   # busy: keep its last state for now
            except self.ray.exceptions.RayError as exc:
                self._node_lost(node_id, f"its agent died ({type(exc).__name__})")
        with self._lock:
            self.states, self._published = states, None
        self._spread(states)

    def _spread(self, states: dict[str, NodeState]) -> None:
        """`max_replicas` spans nodes: a model with requests queued on every node that serves it, in two rounds
        running, and fewer processes than its `max_replicas` in all, is loaded on one more node (placed as any
        load, away from those). Each node still scales within itself by its own rules."""
        waiting = set()
        for model_id in model_ids(states):
            views = [s.snapshot_models[model_id] for s in states.values()
                     if model_id in s.snapshot_models and s.snapshot_models[model_id].loaded]
            if views and all(v.metrics and v.metrics.queued for v in views) and \
                    sum(len(v.replicas) for v in views) < views[0].config.replica_limit:
                waiting.add(model_id)
        for model_id in waiting & self._waited:
            job = self.placing.get(model_id)
            if job is None or job.done:
                log.info("fleet: %s has requests queued on every node that serves it; adding a node", model_id)
                self._work.submit(self._spread_to_another_node, model_id)
        self._waited = waiting

    def _spread_to_another_node(self, model_id: str) -> None:
        serving = set(self.serving(model_id))
        try:
            config = self.config.models.get(model_id)
            node_id = place(model_id, [c for c in self._candidates(model_id) if c.node_id not in serving],
                            config.nodes if config else [])
        except SupervisorError as exc:
            log.info("fleet: %s cannot spread: %s", model_id, exc.details)
            return
        with self._lock:
            job = LoadJob(model_id, self.settings.load_timeout_s, force_reload=False)
            self.jobs[job.load_id], self.placing[model_id], self._published = job, job, None
        self._run_load(job, node_id)

    def _refresh_node(self, node_id: str) -> None:
        """One node's state now (after a load there), so what a client reads next is at least as new."""
        state = self.ray.get(self.agents[node_id].state.remote(), timeout=STATE_TIMEOUT_S)
        with self._lock:
            self.states[node_id], self._published = state, None

    def _agent(self, node_id: str, node: dict) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        memory_mb = node.get("Resources", {}).get("memory", 0) / 2**20
        remote = self.ray.remote(NodeAgent).options(
            name=agent_name(node_id), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
            max_concurrency=64, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        log.info("fleet: node %s joined (%.0f MB declared); its agent is %s", node_id[:12], memory_mb,
                 agent_name(node_id)[:26])
        return remote.remote(node_id, self.config, str(self.cache_dir / node_id), memory_mb)

    def _node_lost(self, node_id: str, why: str) -> None:
        with self._lock:
            self.agents.pop(node_id, None)
            state = self.states.pop(node_id, None)
            self.router.forget_node(node_id)
            held = [m for m, view in (state.snapshot_models.items() if state else ()) if view.replicas]
            for model_id in held:
                self.lost[model_id] = f"node {node_id[:12]} was lost ({why}); its processes are gone"
            self._published = None
        log.error("fleet: node %s lost (%s); it held %s", node_id[:12], why, ", ".join(held) or "no model")
        for model_id in held:
            config = self.config.models.get(model_id)
            if config is not None and (config.required or config.preload) and self._may_restart(model_id):
                log.warning("fleet: placing %s again on the nodes left", model_id)
                self._work.submit(self._quietly, model_id)

    def _may_restart(self, model_id: str) -> bool:
        window = self.settings.restart_window_s
        now = time.monotonic()
        recent = [t for t in self.restarts.get(model_id, []) if now - t < window] + [now]
        self.restarts[model_id] = recent
        return len(recent) <= self.settings.restart_budget

    @property
    def snapshot(self) -> Snapshot:
        """The merged view, made when something changed (a refresh, a load's progress, a node lost), not per read."""
        with self._lock:
            if self._published is None:
                self._published = self._merge()
            return self._published

    def _changed(self) -> None:
        with self._lock:
            self._published = None

    def _merge(self) -> Snapshot:
        states, jobs = dict(self.states), dict(self.jobs)
        merged = {model_id: merged_view(model_id, states, self.placing.get(model_id), self.lost.get(model_id))
                  for model_id in model_ids(states)}
        return Snapshot(models=merged, jobs={i: job_view(j) for i, j in jobs.items()},
                        cache=CacheInfo(cache_enabled=True, cache_directory=str(self.cache_dir), cache_size_mb=0.0,
                                        cache_hit_rate=0.0), closing=self._closed.is_set(),
                        loop_alive_at=time.monotonic())

    def view(self, model_id: str) -> ModelView:
        return self.snapshot.models[model_id]

    def nodes(self) -> dict[str, SystemInfo]:
        with self._lock:
            return {node_id: state.system for node_id, state in self.states.items()}

    def system_info(self) -> SystemInfo:
        return fleet_totals(list(self.nodes().values()), self.started_at)

    def node_states(self) -> dict[str, NodeState]:
        with self._lock:
            return dict(self.states)

    def node_free_mb(self) -> dict[str, float]:
        return {node_id: state.capacity.free_mb for node_id, state in self.node_states().items()}

    def missing_required(self) -> list[str]:
        return [m for m, view in self.snapshot.models.items() if view.required and view.status != "loaded"]

    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]:
        return resolve_models(model_type, list(self.snapshot.models), allow_all)

    def job(self, load_id: str) -> JobView:
        with self._lock:
            job = self.jobs.get(load_id)
        if job is None:
            raise SupervisorError(ErrorCode.LOAD_NOT_FOUND, "Load not found",
                                  f"No load with id '{shown(load_id)}' is known")
        return job_view(job)

    def model_for(self, kinds: tuple[str, ...], requested: str | None = None) -> str:
        return pick_model({m: v.kind for m, v in self.snapshot.models.items()}, kinds, requested)

    def has_model(self, kind: str) -> bool:
        return any(view.kind == kind for view in self.snapshot.models.values())

    # -- lifecycle ------------------------------------------------------------------------------------------
    def request_load(self, model_type: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadTicket:
        jobs = [self._load_job(m, force_reload, timeout_s) for m in self.resolve(model_type)]
        return LoadTicket(load_id=jobs[0].load_id, model_type=model_type,
                          completed=all(j.done and not j.error_code for j in jobs), estimated_ms=5000,
                          load_ids={j.model_id: j.load_id for j in jobs} if len(jobs) > 1 else None, jobs=jobs)

    def await_load(self, ticket: LoadTicket) -> None:
        for job in ticket.jobs:
            job.future.result(timeout=job.timeout_s + 60)
        for job in ticket.jobs:
            if job.error_code:
                raise job_error(job)

    def _load_job(self, model_id: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadJob:
        """Join the load in flight, or start one: placed now, loaded on that node's agent in the background."""
        with self._lock:
            running = self.placing.get(model_id)
            if running is not None and not running.done:
                return running
            job = LoadJob(model_id, timeout_s, force_reload)
            self.jobs[job.load_id], self.placing[model_id] = job, job
            self._published = None
        if self.serving(model_id) and not force_reload:
            job.start(0)
            job.finish(JobStatus.COMPLETED)
            job.future.set_result(None)
            return job
        self._work.submit(self._run_load, job)
        return job

    def _run_load(self, job: LoadJob, node_id: str | None = None) -> None:
        """Load where `node_id` says, or where a reload must happen, or where placement puts it."""
        job.start(0)
        try:
            if node_id is None:
                node_id = self.serving(job.model_id)[0] if job.force_reload and self.serving(job.model_id) \
                    else self.place_for(job.model_id)
            job.phase = f"loading on node {node_id[:12]}"
            with self._lock:
                self.loading_on[job.model_id] = node_id
            outcome = self.ray.get(self.agents[node_id].load.remote(job.model_id, job.force_reload, job.timeout_s),
                                   timeout=job.timeout_s + 60)
            if isinstance(outcome, AgentRefusal):
                raise outcome.error()
            self._refresh_node(node_id)
            job.finish(JobStatus.COMPLETED)
            log.info("fleet: %s loaded on node %s in %.0f ms", job.model_id, node_id[:12], outcome)
        except SupervisorError as exc:
            job.finish(JobStatus.FAILED, exc.code, exc.message, exc.details, **exc.context)
        except Exception as exc:  # noqa: BLE001 (Ray's own failures: the node or its agent went away)
            job.finish(JobStatus.FAILED, ErrorCode.LOAD_FAILED, f"the node failed during the load: {exc}",
                       "retry: the load is placed again on the nodes left")
        self._changed()
        job.future.set_result(None)

    def _quietly(self, model_id: str) -> None:
        job = self._load_job(model_id)
        job.future.result()
        if job.error:
            log.error("fleet: %s could not be placed: %s (%s)", model_id, job.error, job.details)

    def _candidates(self, model_id: str) -> list[Candidate]:
        return candidates(model_id, self.node_states(), self.labels, self.settings.evict_idle)

    def place_for(self, model_id: str, avoid: str | None = None) -> str:
        config = self.config.models.get(model_id)
        allowed = [c for c in self._candidates(model_id) if c.node_id != avoid]
        return place(model_id, allowed, config.nodes if config else [])

    def serving(self, model_id: str) -> list[str]:
        return serving_nodes(model_id, self.node_states())

    def unload(self, model_type: str) -> UnloadView:
        began = time.monotonic()
        freed, was_loaded = 0.0, False
        for model_id in self.resolve(model_type):
            for node_id, agent in list(self.agents.items()):
                outcome = self.ray.get(agent.unload.remote(model_id), timeout=self.settings.drain_timeout_s + 60)
                if isinstance(outcome, AgentRefusal):
                    raise outcome.error()
                freed += outcome.memory_freed_mb
                was_loaded = was_loaded or outcome.was_loaded
        self.refresh()
        return UnloadView(model_type=model_type, memory_freed_mb=round(freed, 1),
                          unload_time_ms=round((time.monotonic() - began) * 1000, 1),
                          models_remaining=[m for m, v in self.snapshot.models.items() if v.loaded],
                          was_loaded=was_loaded)

    def register(self, name: str, config_json: str | bytes) -> bool:
        """Registered on every node (each keeps its registry), and known to the gateway's placement."""
        replaced = False
        data = config_json.encode() if isinstance(config_json, str) else config_json
        for agent in list(self.agents.values()):
            outcome = self.ray.get(agent.register.remote(name, data), timeout=STATE_TIMEOUT_S * 3)
            if isinstance(outcome, AgentRefusal):
                raise outcome.error()
            replaced = replaced or outcome
        self.refresh()
        return replaced

    def forget(self, name: str) -> None:
        for agent in list(self.agents.values()):
            outcome = self.ray.get(agent.forget.remote(name), timeout=STATE_TIMEOUT_S * 3)
            if isinstance(outcome, AgentRefusal):
                raise outcome.error()
        self.refresh()

    # -- work -----------------------------------------------------------------------------------------------
    def submit(self, *orders: Order) -> list[Future]:
        """Each order sent to its node's agent at once; its Future gets the agent's answer, or the refusal."""
        return self.router.submit(*orders)

    def load_target(self, model_id: str) -> str | None:
        """The node a load of the model in flight goes to (its requests queue there meanwhile)."""
        job = self.placing.get(model_id)
        return self.loading_on.get(model_id) if job is not None and not job.done else None
