"""Prometheus metrics with prometheus-client: histograms observed as events happen, everything else read from
the published snapshot at scrape time (so the numbers cannot drift from /model/info)."""

from __future__ import annotations

import os
from typing import Callable

import psutil
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from supervisor.memory import MB
from supervisor.snapshot import Snapshot

LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COUNTERS = (("restarts", "Restarts after a crash or a watchdog kill"),
            ("cold_starts", "Loads triggered by a request for an unloaded model"),
            ("idle_unloads", "Unloads after keep_alive_s of idleness"),
            ("evictions", "Unloads to make memory for another model"))
GAUGES = (("open_streams", "Open streams"),
          ("queued_requests", "Requests waiting in the model's queue (a KEDA/HPA scaling signal)"),
          ("in_flight_requests", "Requests running in the model's processes"),
          ("replicas", "Processes of the model, starting ones included"))


class SupervisorMetrics:
    """One registry per supervisor (no global state: two supervisors in one process do not mix)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self.registry = CollectorRegistry(auto_describe=True)
        self.load_duration = Histogram("funasr_load_duration_seconds", "Time from load request to model ready",
                                       ["model"], buckets=LOAD_BUCKETS, registry=self.registry)
        self.request_duration = Histogram("funasr_request_duration_seconds", "Model request latency, queue "
                                          "wait included", ["model"], buckets=REQUEST_BUCKETS,
                                          registry=self.registry)
        self.registry.register(self)

    def collect(self):
        yield from self._model_families()
        process = psutil.Process(os.getpid())
        server = GaugeMetricFamily("funasr_server_memory_rss_bytes", "RSS of the API/supervisor process")
        server.add_metric([], process.memory_info().rss)
        yield server
        available = GaugeMetricFamily("funasr_system_memory_available_bytes", "Host memory available")
        available.add_metric([], psutil.virtual_memory().available)
        yield available

    def _model_families(self):
        loaded = GaugeMetricFamily("funasr_model_loaded", "1 when the model is loaded", labels=["model"])
        rss = GaugeMetricFamily("funasr_model_memory_rss_bytes", "RSS of the model's processes", labels=["model"])
        unique = GaugeMetricFamily("funasr_model_memory_unique_bytes", "Private_Dirty of the model's processes "
                                   "(what unloading frees)", labels=["model"])
        gauges = {name: GaugeMetricFamily(f"funasr_model_{name}", text, labels=["model"]) for name, text in GAUGES}
        requests = CounterMetricFamily("funasr_model_requests", "Requests by outcome", labels=["model", "outcome"])
        counters = {name: CounterMetricFamily(f"funasr_model_{name}", text, labels=["model"])
                    for name, text in COUNTERS}
        for model_id, view in self._snapshot().models.items():
            metrics, details = view.metrics, view.details
            loaded.add_metric([model_id], float(view.loaded))
            rss.add_metric([model_id], view.memory_usage_mb * MB)
            unique.add_metric([model_id], (details.memory_unique_mb or 0.0) * MB)
            gauges["open_streams"].add_metric([model_id], details.open_streams)
            gauges["queued_requests"].add_metric([model_id], metrics.queued)
            gauges["in_flight_requests"].add_metric([model_id], metrics.in_flight)
            gauges["replicas"].add_metric([model_id], len([r for r in view.replicas if r.state != "stopping"]))
            for outcome, count in sorted(metrics.requests_by_outcome.items()):
                requests.add_metric([model_id, outcome], count)
            for name, _ in COUNTERS:
                counters[name].add_metric([model_id], getattr(metrics, name))
        yield from (loaded, rss, unique, *gauges.values(), requests, *counters.values())
