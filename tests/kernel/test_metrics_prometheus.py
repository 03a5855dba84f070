"""A real Prometheus scrapes a real daemon (issue 19): the series reach
Prometheus's query API with the values the daemon reports, the latency
histogram counts every event the file sink wrote, the shipped scrape config
and alert rules load and evaluate, and `promtool check metrics` finds
nothing in the daemon's exposition.

Prometheus (Debian's `prometheus`) is started by the test on 127.0.0.1 with
the shipped example config (etc/examples/prometheus/), its target and
intervals changed for the test, and a temporary storage directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.kernel.daemon_harness import TIME_FACTOR, REPO, DaemonProcess, wait_for
from tests.policy_files import lseek_equal, put

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
OFFSET = 7_000_000 + (int(RUN, 16) % 1_000_000) * 16
POLICY = f"prom-{RUN}"
EXAMPLES = REPO / "etc" / "examples" / "prometheus"
# Series whose values only this test changes: Prometheus must hold exactly
# what the daemon reports. (Others move with every exec on the host.)
STABLE = ("tetragon_tracingpolicy_loaded", "tetragon_policy_events_total",
          "tetragon_tracingpolicy_selector_actions_total", "tetrad_policy_user_memory_reads_total",
          "tetragon_process_cache_capacity", "tetragon_build_info")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=30).read().decode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("metrics")
    os.chmod(work, 0o755)
    policy = put(work, "policy.yaml", lseek_equal(POLICY, OFFSET))
    port = free_port()
    d = DaemonProcess(work, "--policy", str(policy), "--metrics-address", f"127.0.0.1:{port}")
    d.metrics_url = f"http://127.0.0.1:{port}/metrics"
    d.target = f"127.0.0.1:{port}"
    d.sock = work / "api.sock"
    yield d
    d.stop()


@pytest.fixture(scope="module")
def prometheus(daemon, tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(EXAMPLES / name) for name in config["rule_files"]]
    assert config["scrape_configs"][0]["job_name"] == "tetrad"
    config["scrape_configs"][0]["static_configs"] = [{"targets": [daemon.target]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, (work / "prometheus.log").read_text()
        try:
            return get(f"{api}/-/ready")
        except OSError:
            return None
    try:
        wait_for(ready, 60 * TIME_FACTOR, "Prometheus ready", interval=0.2)

        def scraped():
            targets = json.loads(get(f"{api}/api/v1/targets"))["data"]["activeTargets"]
            return [t for t in targets if t["health"] == "up"]
        up = wait_for(scraped, 30 * TIME_FACTOR, "the daemon scraped", interval=0.2,
                      context=lambda: get(f"{api}/api/v1/targets"))
        print(f"Prometheus scrapes {up[0]['scrapeUrl']}")
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(api: str, promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql, **({"time": f"{at:.3f}"} if at else {})}
    answer = json.loads(get(f"{api}/api/v1/query?{urllib.parse.urlencode(params)}"))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def series_of(text: str) -> dict[tuple, float]:
    """(name, sorted labels) -> value of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def prometheus_series(api: str, names: set[str]) -> dict[tuple, float]:
    """The same, from Prometheus's latest scrape, without job and instance."""
    regex = "|".join(sorted(names))
    out = {}
    for row in query(api, f'{{__name__=~"{regex}",job="tetrad"}}'):
        labels = {k: v for k, v in row["metric"].items() if k not in ("job", "instance")}
        name = labels.pop("__name__")
        out[(name, tuple(sorted(labels.items())))] = float(row["value"][1])
    return out


def daemon_posted(daemon) -> int:
    out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(daemon.sock),
                          "status", "-o", "json"], cwd=REPO, capture_output=True, text=True,
                         timeout=60 * TIME_FACTOR)
    assert out.returncode == 0, out.stderr
    row = next(p for p in json.loads(out.stdout)["policies"] if p["name"] == POLICY)
    return row["counters"]["posted"]


def test_prometheus_holds_the_values_the_daemon_reports(daemon, prometheus):
    for _ in range(3):
        try:
            os.lseek(-1, OFFSET, 0)
        except OSError:
            pass
    wait_for(lambda: daemon_posted(daemon) == 3, 30 * TIME_FACTOR, "the daemon counting 3 events")
    got = wait_for(lambda: [r for r in query(prometheus, f'tetragon_policy_events_total{{policy="{POLICY}"}}')
                            if r["value"][1] == "3"], 30 * TIME_FACTOR,
                   "Prometheus holding the 3 events")
    assert got[0]["metric"]["job"] == "tetrad"

    # Every series of the daemon's own page is in Prometheus, and those only
    # this test moves hold the same values.
    def compared():
        ours = series_of(get(daemon.metrics_url))
        names = {name for name, _ in ours if name.startswith(("tetragon_", "tetrad_"))}
        theirs = prometheus_series(prometheus, names)
        missing = [key for key in ours if key[0] in names and key not in theirs]
        differ = {key: (ours[key], theirs[key]) for key in ours
                  if key[0] in STABLE and key in theirs and ours[key] != theirs[key]}
        return (not missing and not differ, missing, differ, len(ours))
    ok = wait_for(lambda: (result := compared())[0] and result, 30 * TIME_FACTOR,
                  "Prometheus holding every series of the daemon", context=lambda: str(compared()))
    print(f"{ok[3]} samples on the daemon's page, all in Prometheus")


def test_latency_histogram_counts_every_event_the_file_sink_wrote(daemon, prometheus):
    """In one scrape, the histogram's count equals the events the file sink
    wrote (events keep coming from the host, so look for a scrape where
    the two were read together)."""
    def same_scrape():
        at = time.time()
        count = query(prometheus, 'tetrad_event_latency_seconds_count{sink="jsonfile"}', at)
        written = query(prometheus, 'tetragon_events_exported_total{sink="jsonfile"}', at)
        return count and written and count[0]["value"][1] == written[0]["value"][1] \
            and float(count[0]["value"][1]) > 0 and count[0]["value"][1]
    count = wait_for(same_scrape, 30 * TIME_FACTOR, "histogram count == events written")
    p50 = query(prometheus, 'histogram_quantile(0.5, tetrad_event_latency_seconds_bucket{sink="jsonfile"})')
    median = float(p50[0]["value"][1])
    print(f"{count} events written to the file; median latency {median * 1000:.0f} ms")
    assert 0 < median < 30


def test_shipped_alert_rules_are_evaluated_without_errors(prometheus):
    def evaluated():
        groups = json.loads(get(f"{prometheus}/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups if g["name"] == "tetrad" for r in g["rules"]]
        return len(rules) == 5 and all(r["lastEvaluation"] > "2000" for r in rules) and rules
    rules = wait_for(evaluated, 30 * TIME_FACTOR, "the tetrad rules evaluated")
    assert {r["health"] for r in rules} == {"ok"}, rules
    assert {r["name"] for r in rules} >= {"TetradEventsLost", "TetradRingBufferFull", "TetradDown"}


def test_promtool_finds_nothing_in_the_daemons_page(daemon):
    page = get(daemon.metrics_url)
    out = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_a_taken_metrics_address_is_logged_and_the_daemon_runs_without(tmp_path):
    os.chmod(tmp_path, 0o755)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        d = DaemonProcess(tmp_path, "--metrics-address", address)      # waits for "ready in"
        try:
            d.sync()
            log = d.stderr_path.read_text()
            assert f"metrics off: cannot listen on {address}: Address already in use" in log
        finally:
            d.stop()
