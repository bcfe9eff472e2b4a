"""Optional Prometheus metrics (``[metrics] listen = "127.0.0.1:9464"``).

Values are read from the database at scrape time, so they are true for every daemon
sharing it and need no bookkeeping in the hot path. prometheus-client is an optional
dependency (``pip install storyline[metrics]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.service import Services


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError("metrics.listen", f"must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class MetricsServer:
    def __init__(self, services: Services, listen: str) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ConfigError(
                "metrics.listen",
                "needs prometheus-client: pip install 'storyline[metrics]'",
            ) from None
        host, port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(services))
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Collector:
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from daemon.status import collect

        report = collect(self.services)
        counts, inbox = report["counts"], report["inbox"]
        yield CounterMetricFamily(
            "storyline_events_appended", "Events in the log.", value=counts["events"]
        )
        yield GaugeMetricFamily("storyline_articles", "Articles known.", value=counts["articles"])
        yield CounterMetricFamily(
            "storyline_files_rejected", "Inputs refused.", value=counts["rejections"]
        )
        lag = GaugeMetricFamily(
            "storyline_projection_lag_events", "Events not yet projected.", labels=["projection"]
        )
        for name, value in report["projection_lag"].items():
            lag.add_metric([name], value)
        yield lag
        yield GaugeMetricFamily(
            "storyline_inbox_backlog_files", "Files waiting in the inbox.", value=inbox["backlog"]
        )
        yield GaugeMetricFamily(
            "storyline_inbox_oldest_file_age_seconds",
            "Age of the oldest waiting file.",
            value=inbox["oldest_age_seconds"] or 0.0,
        )
        if report["wal_bytes"] is not None:
            yield GaugeMetricFamily(
                "storyline_sqlite_wal_bytes",
                "Size of the write-ahead log.",
                value=report["wal_bytes"],
            )
        yield from self._fetches()

    def _fetches(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.services.engine.connect() as conn:
            outcomes = conn.exec_driver_sql(
                "SELECT outcome, count(*) FROM fetch_log GROUP BY outcome"
            ).all()
            successes = conn.exec_driver_sql(
                "SELECT source_id, last_success_at FROM sources WHERE last_success_at IS NOT NULL"
            ).all()
        fetches = CounterMetricFamily(
            "storyline_fetches", "Source checks by outcome.", labels=["outcome"]
        )
        for outcome, count in outcomes:
            fetches.add_metric([outcome], count)
        yield fetches
        last = GaugeMetricFamily(
            "storyline_source_last_success_timestamp_seconds",
            "When each source was last checked without failing.",
            labels=["source_id"],
        )
        from storage.events import from_iso

        for source_id, at in successes:
            moment = at if hasattr(at, "timestamp") else from_iso(str(at))
            last.add_metric([source_id], moment.timestamp())
        yield last
