"""Prometheus metrics with prometheus-client: histograms observed as events happen, everything else read from
the supervisor's own state at scrape time (so the numbers cannot drift from /model/info)."""

from __future__ import annotations

import os

import psutil
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from supervisor.memory import MB, rss_mb
from supervisor.states import ModelStatus

LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COUNTERS = (("restarts", "restarts_total", "Restarts after a crash or a watchdog kill"),
            ("cold_starts", "cold_starts_total", "Loads triggered by a request for an unloaded model"),
            ("idle_unloads", "idle_unloads_total", "Unloads after keep_alive_s of idleness"),
            ("evictions", "evictions_total", "Unloads to make memory for another model"))


class SupervisorMetrics:
    """One registry per supervisor (no global state: two supervisors in one process do not mix)."""

    def __init__(self, supervisor) -> None:
        self._sup = supervisor
        self.registry = CollectorRegistry(auto_describe=True)
        self.load_duration = Histogram("funasr_load_duration_seconds", "Time from load request to model ready",
                                       ["model"], buckets=LOAD_BUCKETS, registry=self.registry)
        self.request_duration = Histogram("funasr_request_duration_seconds", "Model request latency",
                                          ["model"], buckets=REQUEST_BUCKETS, registry=self.registry)
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
        rss = GaugeMetricFamily("funasr_model_memory_rss_bytes", "RSS of the model's process", labels=["model"])
        unique = GaugeMetricFamily("funasr_model_memory_unique_bytes", "Private_Dirty of the model's process "
                                   "(what unloading frees; only with [server] metrics_unique_memory)",
                                   labels=["model"])
        streams = GaugeMetricFamily("funasr_model_open_streams", "Open ASR streams", labels=["model"])
        requests = CounterMetricFamily("funasr_model_requests", "Requests by outcome", labels=["model", "outcome"])
        counters = {attr: CounterMetricFamily(f"funasr_model_{name.removesuffix('_total')}", text, labels=["model"])
                    for attr, name, text in COUNTERS}
        for model_id, slot in self._sup.slots.items():
            is_loaded = slot.status is ModelStatus.LOADED and slot.worker is not None
            loaded.add_metric([model_id], float(is_loaded))
            rss.add_metric([model_id], rss_mb(slot.worker.pid) * MB if is_loaded else 0.0)
            if self._sup.settings.metrics_unique_memory:
                unique.add_metric([model_id], slot.unique_memory_mb() * MB if is_loaded else 0.0)
            streams.add_metric([model_id], self._sup.inference.streams.open_count(model_id))
            for outcome, count in sorted(slot.usage.outcomes.items()):
                requests.add_metric([model_id, outcome], count)
            counters["restarts"].add_metric([model_id], slot.restarts)
            for attr in ("cold_starts", "idle_unloads", "evictions"):
                counters[attr].add_metric([model_id], getattr(slot.usage, attr))
        yield from (loaded, rss, unique, streams, requests, *counters.values())
