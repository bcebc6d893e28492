"""curate.stats.metrics without a Prometheus: the spec's ``metrics`` section, and metrics off
creating no metric object at all (tests/stats/test_metrics_prometheus.py scrapes a real run)."""

from __future__ import annotations

import pytest

from curate.config import MetricsSpec, parse_spec
from curate.errors import ConfigError
from curate.net.fetch import Fetched
from curate.stages.base import Resources
from curate.stats import metrics

SPEC = {"name": "m", "input": {"path": "in.parquet"}, "stages": [{"stage": "laion_caption"}]}


def test_metrics_are_on_by_default_and_do_not_change_the_fingerprint() -> None:
    default = parse_spec(SPEC)
    off = parse_spec({**SPEC, "metrics": {"enabled": False, "export_port": 9464}})
    assert default.metrics == MetricsSpec(enabled=True, export_port=0)
    assert (off.metrics.enabled, off.metrics.export_port) == (False, 9464)
    assert off.fingerprint() == default.fingerprint()  # how a run is watched is not what it computes


@pytest.mark.parametrize(("metrics_section", "key", "problem"), [
    ({"enable": True}, "metrics.enable", "unknown key"),
    ({"export_port": 70000}, "metrics.export_port", "Input should be less than or equal to 65535"),
    ({"enabled": "sometimes"}, "metrics.enabled", "Input should be a valid boolean, unable to interpret input"),
])
def test_a_bad_metrics_section_is_one_line_naming_the_key(metrics_section, key, problem) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_spec({**SPEC, "metrics": metrics_section})
    message = str(caught.value)
    assert "\n" not in message and key in message and problem in message, message


def test_metrics_off_creates_no_metric_object(monkeypatch) -> None:
    """``metrics: {enabled: false}``: recording is a no-op before any Ray metric object exists."""
    from ray.data import DataContext

    monkeypatch.setattr(metrics, "_metrics", None)
    monkeypatch.setattr(metrics, "_enabled_in_driver", None)
    context = DataContext.get_current()
    monkeypatch.setattr(context, "_kv_configs", dict(context._kv_configs))
    metrics.configure(False)
    monkeypatch.setattr(metrics, "_enabled_in_driver", None)  # as in a worker: only the DataContext tells
    assert metrics.enabled() is False

    class Part:
        name, kind, resources = "clip_score", "clip_embed", Resources(gpus=1.0)

    metrics.stage_batch(Part(), 10, {"low_clip_score": 3}, 0.5)
    metrics.download_batch("download", 1000, {"200": 2})
    metrics.units_progress("shards", 1, 3)
    assert not metrics.created()


def test_a_fetch_outcome_is_its_http_status_or_its_failure() -> None:
    assert Fetched(b"x", status=200).outcome == "200"
    assert Fetched(None, "http_404", "HTTP 404 Not Found", status=404).outcome == "404"
    assert Fetched(None, "timeout", "no complete answer within 5s").outcome == "timeout"
