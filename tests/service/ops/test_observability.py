"""Metrics, request logs, request ids, security headers and the JSON depth limit: in
process through the Flask test client, then under the real gunicorn (2 workers), where the
metrics are summed across workers and every line the server wrote is searched for the
health data a request carried."""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import logging
import os
import random
import re
import time

import pytest
import requests
from flask import Response
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import EnvironBuilder, run_wsgi_app

from formwise.models.knowledge.loading import default_knowledge_base
from formwise.service.app import create_app
from formwise.service.ops import observability
from tests.e2e.server import running_service

URL = "/v1/recommendations"
# Recognisable values a log must never show: a rare condition, a goal, a known medicine
# (by brand and generic name) and an unknown one that is echoed back in the answer.
SECRET_WORDS = ("myasthenia_gravis", "migraine_prevention", "Tivicay", "dolutegravir", "Zorblaxitine")
SECRET_PROFILE = {
    "age": 63, "sex": "female", "egfr": 52, "conditions": ["myasthenia_gravis"],
    "goals": ["migraine_prevention"], "medications": ["Tivicay", "dolutegravir", "Zorblaxitine"],
}


def request_lines(text: str) -> list[dict]:
    """The JSON request lines in captured output (other lines are left alone)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{") and '"message":"request"' in line:
            lines.append(json.loads(line))
    return lines


def wait_for_request_lines(log_path, wanted, timeout: float = 15) -> list[dict]:
    """The log's request lines once ``wanted(lines)`` holds: the server writes them in batches
    (at most FORMWISE_LOG_FLUSH_SECONDS late)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = request_lines(log_path.read_text())
        if wanted(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---- request ids and log lines -------------------------------------------------------


def test_a_given_request_id_is_echoed_and_logged(client, capsys):
    response = client.get("/health/live", headers={"X-Request-ID": "shop-42.req:7"})
    assert response.headers["X-Request-ID"] == "shop-42.req:7"
    (line,) = [entry for entry in request_lines(capsys.readouterr().err) if entry["request_id"] == "shop-42.req:7"]
    assert line["method"] == "GET" and line["endpoint"] == "/health/live" and line["status"] == 200
    assert line["level"] == "info" and line["logger"] == "formwise.requests" and line["duration_ms"] >= 0


def test_other_lines_logged_while_answering_carry_the_request_id(capsys):
    app = create_app({"TESTING": True})

    @app.get("/logs-a-line")
    def logs_a_line():
        logging.getLogger("formwise.test").warning("while answering")
        return {"ok": True}

    app.test_client().get("/logs-a-line", headers={"X-Request-ID": "pharmacy-7"})
    logging.getLogger("formwise.test").warning("after answering")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"formwise.test"' in line]
    assert [(line["message"], line.get("request_id")) for line in lines] == [
        ("while answering", "pharmacy-7"), ("after answering", None)]


@pytest.mark.parametrize("given", [None, "", "has space", "quote\"d", "x" * 129, "semi;colon", "tab\there"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(client, given):
    headers = {} if given is None else {"X-Request-ID": given}
    first = client.get("/health/live", headers=headers).headers["X-Request-ID"]
    second = client.get("/health/live", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_one_log_line_per_request_even_when_answered_early(client, capsys):
    client.post(URL, json={"profile": {"age": 40}})
    client.post(URL, data="age=40", content_type="text/plain")  # 415 from an earlier before_request
    client.get("/nowhere")
    lines = request_lines(capsys.readouterr().err)
    assert [(line["endpoint"], line["status"]) for line in lines] == [
        ("/v1/recommendations", 200), ("/v1/recommendations", 415), ("unmatched", 404)]
    assert len({line["request_id"] for line in lines}) == 3


def test_a_request_line_written_directly_is_the_line_logging_writes(client, capsys):
    """With no handler but the service's own (as under gunicorn) the line skips the logging
    machinery; with a test's capture on the root logger it goes through it. Same line."""
    root = logging.getLogger()
    assert observability._sole_handler() is None  # pytest's capture handlers are on the root
    saved = root.handlers[:]
    for handler in saved:
        root.removeHandler(handler)
    try:
        assert isinstance(observability._sole_handler(), observability.StderrHandler)
        client.get("/health/live", headers={"X-Request-ID": "direct"})
    finally:
        for handler in saved:
            root.addHandler(handler)
    client.get("/health/live", headers={"X-Request-ID": "through-logging"})
    direct, through_logging = request_lines(capsys.readouterr().err)
    assert list(direct) == list(through_logging)  # the same fields in the same order
    for line in (direct, through_logging):
        del line["ts"], line["duration_ms"], line["request_id"]
    assert direct == through_logging


@pytest.fixture()
def batching_handler(capsys):
    """A StderrHandler of its own (not the process's), writing to the captured stderr."""
    handler = observability.StderrHandler(flush_seconds=3600)
    handler.setFormatter(observability.JsonFormatter())
    yield handler
    handler.flush_seconds = 0  # its flusher thread, if any, ends when it next wakes


def test_request_lines_wait_to_be_written_together(batching_handler, capsys):
    batching_handler.write_line('{"n":1}')
    batching_handler.write_line('{"n":2}')
    assert capsys.readouterr().err == ""
    batching_handler.flush()  # as logging does at exit
    assert capsys.readouterr().err == '{"n":1}\n{"n":2}\n'


def test_another_record_writes_the_waiting_request_lines_first(batching_handler, capsys):
    batching_handler.write_line('{"n":1}')
    batching_handler.handle(logging.makeLogRecord({"name": "formwise.test", "msg": "later", "levelno": 30,
                                                   "levelname": "WARNING"}))
    first, second = capsys.readouterr().err.splitlines()
    assert first == '{"n":1}' and json.loads(second)["message"] == "later"


def test_a_full_buffer_is_written_at_once(batching_handler, capsys):
    line = '{"pad":"' + "x" * 1000 + '"}'
    count = batching_handler.MAX_PENDING_BYTES // (len(line) + 1) + 1
    for _ in range(count):
        batching_handler.write_line(line)
    assert capsys.readouterr().err.count(line) == count


def test_without_a_flush_period_each_line_is_written_at_once(batching_handler, capsys):
    batching_handler.flush_seconds = 0
    batching_handler.write_line('{"n":1}')
    assert capsys.readouterr().err == '{"n":1}\n'


def test_waiting_lines_are_written_within_the_flush_period_with_no_other_traffic(capsys):
    handler = observability.StderrHandler(flush_seconds=0.05)
    handler.write_line('{"n":1}')
    deadline = time.monotonic() + 10
    written = ""
    while not written and time.monotonic() < deadline:
        time.sleep(0.05)
        written = capsys.readouterr().err
    assert written == '{"n":1}\n'
    handler.flush_seconds = 0  # the flusher thread then ends
    deadline = time.monotonic() + 10
    while handler._flusher is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handler._flusher is None


def test_a_forked_child_starts_with_no_waiting_lines(batching_handler):
    batching_handler.write_line('{"n":1}')
    child = os.fork()
    if child == 0:  # the child: its parent writes the line, never the child too
        os._exit(0 if batching_handler._pending == [] and batching_handler._flusher is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert batching_handler._pending == ['{"n":1}']
    batching_handler._pending.clear()


@pytest.mark.parametrize("text, seconds", [(None, 1.0), ("", 1.0), ("0", 0.0), ("0.25", 0.25), ("60", 60.0)])
def test_the_flush_period_setting(text, seconds):
    from formwise.service.settings import Settings

    environ = {} if text is None else {"FORMWISE_LOG_FLUSH_SECONDS": text}
    assert Settings(environ=environ)["FORMWISE_LOG_FLUSH_SECONDS"] == seconds


@pytest.mark.parametrize("text", ["-1", "61", "soon", "nan", "inf"])
def test_a_bad_flush_period_stops_start_up_naming_the_setting(text, monkeypatch):
    monkeypatch.setenv("FORMWISE_LOG_FLUSH_SECONDS", text)
    with pytest.raises(ValueError, match="FORMWISE_LOG_FLUSH_SECONDS must be a number of seconds from 0 to 60"):
        create_app({"TESTING": True})


def test_log_timestamps_are_datetimes_iso_format():
    rounding_edges = [1_767_225_599.9994999, 1_767_225_599.9995, 1_767_225_599.9999996, 1_767_225_600.0,
                      1_767_225_600.0005, 1_767_225_600.0004999, 0.0]
    generator = random.Random(7)
    spread = [generator.uniform(0, 4_000_000_000) for _ in range(2000)]
    for created in rounding_edges + spread:
        expected = datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds")
        assert observability.utc_timestamp(created) == expected, created


def test_no_health_data_reaches_any_log_line_in_process(capsys, caplog):
    """Answers, validation errors, batches, paths, query strings and a crash carrying the
    profile in its exception message: none of it may show in the log."""

    class Exploding:
        version = "x"
        model_version = "x"
        knowledge_base = default_knowledge_base()  # the forms its answer ids would name

        def recommend(self, profiles, **kwargs):
            raise KeyError(" ".join(profiles[0]["conditions"] + profiles[0]["medications"]))

    caplog.set_level("DEBUG")
    client = create_app({"TESTING": True}).test_client()
    assert client.post(URL, json={"profile": SECRET_PROFILE}).status_code == 200
    bad = {**SECRET_PROFILE, "conditions": ["myasthenia_gravis", "Zorblaxitine"]}
    assert client.post(URL, json={"profile": bad}).status_code == 422
    batch = {"items": [{"id": "a", "profile": SECRET_PROFILE}, {"id": "b", "profile": bad}]}
    assert client.post(URL + "/batch", json=batch).status_code == 200
    assert client.get("/v1/forms/myasthenia_gravis?medication=Zorblaxitine").status_code == 404
    crashing = create_app({"TESTING": False, "RECOMMENDER": Exploding()}).test_client()
    assert crashing.post(URL, json={"profile": SECRET_PROFILE}).status_code == 500

    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert len(request_lines(captured.err)) == 5
    assert "unhandled KeyError at " in captured.err  # the crash was logged, by type and place only
    for word in SECRET_WORDS:
        assert word.lower() not in everything.lower(), word


# ---- metrics ---------------------------------------------------------------------------


def test_requests_and_latency_are_counted_by_route_template_and_status(client):
    labels = {"endpoint": "/v1/forms/{form_id}", "method": "GET", "status": "404"}
    before = sample("formwise_http_requests_total", **labels)
    before_latency = sample("formwise_http_request_duration_seconds_count", **labels)
    client.get("/v1/forms/not-a-form")
    client.get("/v1/forms/neither")
    assert sample("formwise_http_requests_total", **labels) == before + 2
    assert sample("formwise_http_request_duration_seconds_count", **labels) == before_latency + 2


def test_answers_are_counted_by_max_severity(client):
    before = {severity: sample("formwise_answers_total", max_severity=severity)
              for severity in ("info", "warning", "critical")}
    assert client.post(URL, json={"profile": {"age": 0}}).get_json()["max_severity"] == "critical"
    assert client.post(URL, json={"profile": {"age": 40, "egfr": 95}}).get_json()["max_severity"] == "info"
    assert sample("formwise_answers_total", max_severity="critical") == before["critical"] + 1
    assert sample("formwise_answers_total", max_severity="info") == before["info"] + 1
    assert sample("formwise_answers_total", max_severity="warning") == before["warning"]


def test_batch_rows_scored_and_rejected_are_counted(client):
    scored = sample("formwise_batch_rows_total", outcome="scored")
    rejected = sample("formwise_batch_rows_total", outcome="rejected")
    items = [{"id": "1", "profile": {"age": 40}}, {"id": "2", "profile": {"age": 400}},
             {"id": "3", "profile": {"age": 70, "egfr": 20}}, None]
    results = client.post(URL + "/batch", json={"items": items}).get_json()["results"]
    assert [result["error"] is None for result in results] == [True, False, True, False]
    assert sample("formwise_batch_rows_total", outcome="scored") == scored + 2
    assert sample("formwise_batch_rows_total", outcome="rejected") == rejected + 2


def test_metrics_endpoint_speaks_prometheus_text(client):
    client.get("/health/live")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"formwise_http_requests", "formwise_http_request_duration_seconds", "formwise_answers",
            "formwise_batch_rows"} <= names


# ---- security headers ------------------------------------------------------------------


@pytest.mark.parametrize("method, path, status", [
    ("post", URL, 200), ("get", "/v1/forms", 200), ("get", "/nowhere", 404), ("get", "/metrics", 200)])
def test_api_responses_refuse_sniffing_framing_and_referrers(client, method, path, status):
    kwargs = {"json": {"profile": {"age": 40}}} if method == "post" else {}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


def test_answers_are_not_stored_by_caches(client):
    assert client.post(URL, json={"profile": {"age": 40}}).headers["Cache-Control"] == "no-store"


def test_the_docs_page_gets_a_page_policy_that_still_refuses_framing(client):
    response = client.get("/docs")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"


def headers_for(app, path: str, body: str, mimetype: str, headers: dict | None = None):
    """The headers a response of that type at that path leaves the app with: the view is
    stood in for by the response itself, behind the app's own observability layer."""
    view = Response(body, mimetype=mimetype, headers=headers)
    layer = observability.RequestObservability(view, app.extensions["formwise_settings"]["FORMWISE_FRAME_ANCESTORS"])
    _, _, sent = run_wsgi_app(layer, EnvironBuilder(path).get_environ())
    return sent


def test_the_widget_demo_page_may_be_framed_by_the_configured_sites():
    default = headers_for(create_app({"TESTING": True}), "/demo", "<p>demo</p>", "text/html")
    assert "X-Frame-Options" not in default
    assert default["Content-Security-Policy"].endswith("frame-ancestors *")
    app = create_app({"TESTING": True, "FORMWISE_FRAME_ANCESTORS": "https://shop.example"})
    policy = headers_for(app, "/demo", "<p>demo</p>", "text/html")["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example" in policy and "script-src 'self'" in policy


def test_the_widget_script_stays_loadable_from_other_sites():
    headers = headers_for(create_app({"TESTING": True}), "/widget.js", "customElements.define()",
                          "text/javascript")
    assert headers["Content-Type"].startswith("text/javascript")  # nosniff needs a script type: kept
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_policy_a_view_sets_itself_is_kept():
    headers = headers_for(create_app({"TESTING": True}), "/demo", "<p/>", "text/html",
                          {"Content-Security-Policy": "default-src 'self'"})
    assert headers.getlist("Content-Security-Policy") == ["default-src 'self'"]


# ---- JSON depth ------------------------------------------------------------------------


def nested(depth: int):
    """A JSON value of exactly ``depth`` levels of arrays."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_json_deeper_than_the_limit_is_a_400_problem_naming_the_limit(client):
    response = client.post(URL, json={"profile": {"age": 40}, "extra": nested(32)})  # 33 levels
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["errors"] == [{"field": "body", "message": "JSON nested deeper than 32 levels of arrays and objects."}]


def test_json_at_the_limit_passes_the_depth_check(client):
    response = client.post(URL, json={"profile": {"age": 40}, "extra": nested(31)})  # 32 levels
    assert response.status_code == 422  # validated as usual: "extra" is an unknown field
    assert response.get_json()["errors"][0]["field"] == "extra"


def test_the_depth_limit_is_configurable():
    client = create_app({"TESTING": True, "FORMWISE_JSON_MAX_DEPTH": 4}).test_client()
    assert client.post(URL, json={"profile": {"age": 40, "preferences": {"avoid_forms": []}}}).status_code == 200
    items = [{"id": "1", "profile": {"age": 40}}]
    response = client.post(URL + "/batch", json={"items": items})  # 4 levels: {items: [{profile: {}}]}
    assert response.status_code == 200
    response = client.post(URL + "/batch", json={"items": [{"id": "1", "profile": {"age": 40, "goals": []}}]})
    assert response.status_code == 400 and "deeper than 4 levels" in response.get_json()["detail"]


# ---- under gunicorn --------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real ``formwise serve`` with 2 workers, and its log file."""
    workdir = tmp_path_factory.mktemp("observed")
    with running_service(workdir, workers=2) as base:
        yield base, workdir / "server.log"


def scrape(base: str) -> dict[tuple, float]:
    text = requests.get(base + "/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.slow
def test_metrics_are_summed_across_gunicorn_workers(served):
    base, log_path = served
    body = {"profile": {"age": 40, "egfr": 95, "goals": ["sleep"]}}  # max_severity info
    sent, served_by = 0, set()
    # Rounds of 48 concurrent calls until both workers have answered some (a gevent worker may
    # accept every connection of one round while the other waits for the next).
    while len(served_by) < 2 and sent < 48 * 10:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.post(base + URL, json=body, timeout=30).status_code,
                                     range(48)))
        assert statuses == [200] * 48
        sent += 48
        lines = wait_for_request_lines(
            log_path, lambda lines, expected=sent: sum(line["endpoint"] == URL for line in lines) >= expected)
        served_by = {line["pid"] for line in lines if line["endpoint"] == URL}
    assert len(served_by) == 2  # both workers answered, so only a sum over both can read them all
    requests_key = ("formwise_http_requests_total",
                    (("endpoint", URL), ("method", "POST"), ("status", "200")))
    answers_key = ("formwise_answers_total", (("max_severity", "info"),))
    for _ in range(6):  # whichever worker answers the scrape
        samples = scrape(base)
        assert samples[requests_key] == sent and samples[answers_key] == sent


@pytest.mark.slow
def test_server_log_is_json_and_free_of_health_data(served):
    base, log_path = served
    session = requests.Session()
    answer = session.post(base + URL, json={"profile": SECRET_PROFILE}, headers={"X-Request-ID": "secret-test-1"},
                          timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "secret-test-1"
    assert "Zorblaxitine" in answer.json()["unrecognized_medications"]
    bad = {**SECRET_PROFILE, "goals": ["myasthenia_gravis"]}
    assert session.post(base + URL, json={"profile": bad}, timeout=30).status_code == 422
    batch = {"items": [{"id": "x", "profile": SECRET_PROFILE}, {"id": "y", "profile": bad}]}
    assert session.post(base + URL + "/batch", json=batch, timeout=30).status_code == 200
    assert session.get(base + "/dolutegravir?condition=myasthenia_gravis", timeout=30).status_code == 404
    assert session.post(base + URL, data="Tivicay", headers={"Content-Type": "application/json"},
                        timeout=30).status_code == 400

    wait_for_request_lines(log_path, lambda lines: {"secret-test-1", 422, URL + "/batch", 404, 400} <= {
        value for line in lines for value in (line["request_id"], line["status"], line["endpoint"])})
    text = log_path.read_text()
    for word in SECRET_WORDS:
        assert word.lower() not in text.lower(), word
    (line,) = [entry for entry in request_lines(text) if entry["request_id"] == "secret-test-1"]
    assert line["endpoint"] == URL and line["status"] == 200
    gunicorn_lines = [json.loads(row) for row in text.splitlines() if '"logger":"gunicorn.error"' in row]
    assert any(entry["message"].startswith("Booting worker") for entry in gunicorn_lines)


@pytest.mark.slow
def test_a_stopping_server_writes_every_request_line_it_held(tmp_path):
    """Lines held for a minute are all written when the workers stop on SIGTERM."""
    with running_service(tmp_path, workers=2, env={"FORMWISE_LOG_FLUSH_SECONDS": "60"}) as base:
        for number in range(12):
            response = requests.get(base + "/health/live", headers={"X-Request-ID": f"held-{number}"}, timeout=10)
            assert response.status_code == 200
        held = {line["request_id"] for line in request_lines((tmp_path / "server.log").read_text())}
    written = {line["request_id"] for line in request_lines((tmp_path / "server.log").read_text())}
    expected = {f"held-{number}" for number in range(12)}
    assert not expected & held  # still waiting while the server ran
    assert expected <= written


def test_a_forked_child_logs_its_own_process_id():
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write_end, str(observability._process.id == os.getpid()).encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        assert answer.read() == b"True" and observability._process.id == os.getpid()
