"""The shipped Prometheus examples (etc/examples/prometheus/): Prometheus's
own promtool accepts the scrape config and the alert rules, and the drop
alerts fire on series shaped as tetrad exports them (promtool test rules)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "etc" / "examples" / "prometheus"
ALERTS = EXAMPLES / "tetrad-alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_scrape_config_and_rules_are_valid():
    out = promtool("check", "config", str(EXAMPLES / "prometheus.yml"))
    assert out.returncode == 0 and "1 rule files found" in out.stdout, out.stdout + out.stderr
    out = promtool("check", "rules", str(ALERTS))
    assert out.returncode == 0 and "5 rules found" in out.stdout, out.stdout + out.stderr


def test_drop_alerts_fire_on_losses_and_stay_quiet_without(tmp_path):
    instance = {"instance": "127.0.0.1:2112", "job": "tetrad"}
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # queue_full rises by 30 from minute 3; shed never moves.
                {"series": 'tetrad_events_lost_total{instance="127.0.0.1:2112",job="tetrad",kind="queue_full"}',
                 "values": "0 0 0 10 20 30 30 30 30 30 30 30 30 30 30"},
                {"series": 'tetrad_events_lost_total{instance="127.0.0.1:2112",job="tetrad",kind="shed"}',
                 "values": "5x15"},
                {"series": 'tetragon_observer_ringbuf_events_lost_total{instance="127.0.0.1:2112",job="tetrad"}',
                 "values": "0 0 0 0 0 0 4 4 4 4 4 4 4 4 4"},
                {"series": 'up{instance="127.0.0.1:2112",job="tetrad"}', "values": "1x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "TetradEventsLost", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "TetradEventsLost", "exp_alerts": [{
                    "exp_labels": {**instance, "kind": "queue_full", "severity": "warning"},
                    "exp_annotations": {
                        "summary": "tetrad lost 30 events (queue_full) in 5 minutes on 127.0.0.1:2112",
                        "description": "See `tetra status` on the host; the README's Known limits "
                                       "say what each kind means."}}]},
                {"eval_time": "14m", "alertname": "TetradEventsLost", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "TetradRingBufferFull", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "TetradRingBufferFull", "exp_alerts": [{
                    "exp_labels": {**instance, "severity": "critical"},
                    "exp_annotations": {
                        "summary": "tetrad's ring buffer overflowed on 127.0.0.1:2112 (4 records in 5 minutes)",
                        "description": "Raise process.ringbuf_pages in tetrad.toml, or find the flood "
                                       "(tetra status)."}}]},
                {"eval_time": "10m", "alertname": "TetradDown", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "tetrad-alerts-test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = promtool("test", "rules", str(path))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
