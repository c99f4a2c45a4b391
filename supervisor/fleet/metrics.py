"""The fleet's own Prometheus families, labelled by node (the per-model families of one box stay, summed)."""

from __future__ import annotations

from typing import Callable

from prometheus_client.core import GaugeMetricFamily

from supervisor.fleet.agent import NodeState


class NodeMetrics:
    """The fleet's own families, labelled by node: each node's free memory, and each model's processes and RSS
    on it (the per-model families of one box stay, summed over the nodes)."""

    def __init__(self, node_states: Callable[[], dict[str, NodeState]]) -> None:
        self.node_states = node_states

    def collect(self):
        free = GaugeMetricFamily("funasr_node_memory_free_bytes", "Memory a node may still give models",
                                 labels=["node"])
        replicas = GaugeMetricFamily("funasr_node_model_replicas", "A model's processes on a node",
                                     labels=["node", "model"])
        rss = GaugeMetricFamily("funasr_node_model_memory_rss_bytes", "RSS of a model's processes on a node",
                                labels=["node", "model"])
        for node_id, state in self.node_states().items():
            free.add_metric([node_id], state.capacity.free_mb * 2**20)
            for model_id, view in state.snapshot_models.items():
                if view.replicas:
                    replicas.add_metric([node_id, model_id], len(view.replicas))
                    rss.add_metric([node_id, model_id], view.memory_usage_mb * 2**20)
        yield from (free, replicas, rss)
