"""Prometheus metrics of `tunewise serve` (GET /metrics): counts, latency and batch sizes.

Each app has its own registry, so several apps in one process (tests) never share counters.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

PATHS = ("/", "/predict", "/generate", "/feedback", "/health", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Counters and histograms in a private registry; `render()` is the Prometheus text."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tunewise_requests",
            "HTTP requests by path, method and status",
            ["path", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tunewise_request_seconds",
            "time from request to response, by path",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batches = Histogram(
            "tunewise_batch_size",
            "texts per forward pass (micro-batching)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.feedbacks = Counter(
            "tunewise_feedback",
            "feedback POSTs by verdict; created=false for replayed keys",
            ["verdict", "created"],
            registry=self.registry,
        )

        self.abstentions = Counter(
            "tunewise_abstentions",
            'predictions answered "I don\'t know" (out-of-scope score above the threshold)',
            registry=self.registry,
        )

    def observe(self, path: str, method: str, status: int, start: float) -> None:
        path = path if path in PATHS else "other"
        self.requests.labels(path, method, str(status)).inc()
        self.latency.labels(path).observe(time.perf_counter() - start)

    def batch(self, size: int) -> None:
        self.batches.observe(size)

    def abstained(self, count: int) -> None:
        self.abstentions.inc(count)

    def feedback(self, verdict: str, created: bool) -> None:
        self.feedbacks.labels(verdict, str(created).lower()).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
