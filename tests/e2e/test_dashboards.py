"""The Grafana dashboards of dashboards/ query only series sidewatch exports.

The real app (1 in 50 `/checkout` calls failing) and a sidewatch agent run as in
production: the app's structlog file tailed, the `/health` probe with `version_from`,
the default rule pack (rules/python-service.yaml) and the dashboards' recording rules
(dashboards/recording-rules.yaml) as they are, an OTLP exporter configured (its
collector down, so the export series exist), traffic, and a deployment (the app
restarted as 1.0.1) so a verdict series exists. Then every PromQL expression of every
panel, annotation and template variable of every dashboard is tokenized, and each
metric name it names must be in the agent's `/metrics` (polled until all are there or
60 s passed: recorded series appear at their group's first evaluation). The missing
ones are printed.

Also: each expression is valid PromQL (`promtool check rules` on them, Grafana's
variables substituted); the JSON structure Grafana needs (schemaVersion ≥ 42 and what its migrations
require, unique
uids, the `${datasource}` Prometheus variable, `service` / `environment` variables,
a datasource and targets on every panel, the deployment-verdict annotation); the
service dashboard shows request rate, error ratio and p95 latency by `deployment`,
probe success and latency, firing alerts; the recording rules' unit tests pass
(`sidewatch test`); and the README lists every dashboard.

Run: .venv/bin/python -m pytest tests/e2e/test_dashboards.py -q -s  (needs target/debug/sidewatch).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import Agent, StructlogApp, free_port, parse_prometheus, sidewatch_bin, wait_until

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
MIN_SCHEMA_VERSION = 42

# -- the metric-name tokenizer --------------------------------------------------------

# Words of PromQL that are not metric names where they stand without a "(".
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z_$.]+|@\s*[0-9a-z_().]+")
_IDENT = re.compile(r"(?<![0-9A-Za-z_:.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by values PromQL accepts where they stand."""
    expr = re.sub(r"\$__(?:rate_interval|interval|range)(?:_ms|_s)?\b", "1m", expr)
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", ".*", expr)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not function
    calls, keywords, label names (in `{…}`, `by (…)`, `on (…)`…), durations or strings."""
    text = grafana_to_promql(expr)
    text = _STRING.sub('""', text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        after = text[m.end():].lstrip()
        if after.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def test_the_tokenizer() -> None:
    """The tokenizer itself, on the shapes the dashboards use (and a few more)."""
    cases = {
        'sum by (deployment) (rate(sidewatch_log_records_total{service=~"$service", level!="x"}[$__rate_interval]))':
            {"sidewatch_log_records_total"},
        "a:b:c{x=\"y\"} * d_e / ignoring(pod) group_left(z) f":
            {"a:b:c", "d_e", "f"},
        'max by (version, verdict) (v{s="1"}) unless max by (version, verdict) (v{s="1"} offset 2m)': {"v"},
        "sum(x) by (le) > 0.5e3 and on (a, b) y == bool 1": {"x", "y"},
        'histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m]))) or vector(0)': {"h_bucket"},
        'label_replace(up, "a", "$1", "b", "(.*)")': {"up"},
        'count by (version, verdict) (sidewatch_deployment_verdict{service=~"${service}"} == 1)':
            {"sidewatch_deployment_verdict"},
        "avg_over_time(probe_success[10m:1m]) < Inf": {"probe_success"},
    }
    for expr, want in cases.items():
        assert metric_names(expr) == want, f"{expr!r}: got {metric_names(expr)}, want {want}"


# -- reading the dashboards -------------------------------------------------------------


def dashboard_files() -> list[Path]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    return files


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise AssertionError(f"{path.name} is not JSON: {e}") from None


def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # inside collapsed rows
    return out


def variable_query(var: dict) -> str | None:
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q if var.get("type") == "query" else None


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and variable query."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            out.append((f"annotation {ann.get('name')!r}", ann["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):
        q = variable_query(var)
        if not q:
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
        if m:  # label_values(SELECTOR, LABEL): the selector is PromQL
            out.append((f"variable {var['name']!r}", m.group(1)))
        elif not q.lstrip().startswith("label_values("):
            out.append((f"variable {var['name']!r}", q))
    return out


# -- structure --------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    uids: dict[str, str] = {}
    titles: set[str] = set()
    for path in dashboard_files():
        d = load(path)
        name = path.name
        assert isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= MIN_SCHEMA_VERSION, (
            f"{name}: schemaVersion {d.get('schemaVersion')} (want ≥ {MIN_SCHEMA_VERSION})"
        )
        # What Grafana's migrations to 40-42 would change, so the version is true:
        # `refresh` a string (40), no `timepicker.time_options` (41), a field hidden from
        # the graph hidden from its tooltip too (42).
        assert isinstance(d.get("refresh", ""), str), f"{name}: refresh {d.get('refresh')!r} is not a string"
        assert "time_options" not in d.get("timepicker", {}), f"{name}: timepicker.time_options went in 41"
        for panel in all_panels(d):
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override.get("properties", []):
                    if prop.get("id") == "custom.hideFrom" and prop.get("value", {}).get("viz"):
                        assert prop["value"].get("tooltip"), f"{name}: panel {panel.get('title')!r} hides from viz, not tooltip"
        uid = d.get("uid")
        assert isinstance(uid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"{name}: uid {uid!r}"
        assert uid not in uids, f"uid {uid} in both {uids.get(uid)} and {name}"
        uids[uid] = name
        assert d.get("title") and d["title"] not in titles, f"{name}: title missing or repeated"
        titles.add(d["title"])
        assert "id" not in d or d["id"] is None, f"{name}: a dashboard `id` ties it to one Grafana; leave it out"

        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds = variables.get("datasource")
        assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", (
            f"{name}: needs a `datasource` variable of type datasource, query prometheus"
        )
        for label in ("service", "environment"):
            var = variables.get(label)
            assert var and var["type"] == "query", f"{name}: needs a `{label}` query variable"
            assert var["datasource"]["uid"] == "${datasource}", f"{name}: `{label}` queries another datasource"
            assert re.search(rf",\s*{label}\s*\)", variable_query(var) or ""), (
                f"{name}: `{label}` should be label_values(…, {label})"
            )

        panel_ids = set()
        panels = [p for p in all_panels(d) if p.get("type") != "row"]
        assert panels, f"{name}: no panels"
        for p in all_panels(d):
            assert p.get("id") not in panel_ids, f"{name}: panel id {p.get('id')} repeated"
            panel_ids.add(p.get("id"))
            g = p.get("gridPos", {})
            assert {"h", "w", "x", "y"} <= set(g) and g["x"] + g["w"] <= 24, f"{name}: panel {p.get('title')!r} gridPos {g}"
        for p in panels:
            where = f"{name}: panel {p.get('title')!r}"
            assert p.get("title"), f"{name}: a panel has no title"
            assert p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: datasource {p.get('datasource')}"
            targets = p.get("targets")
            assert targets, f"{where}: no targets"
            ref_ids = [t.get("refId") for t in targets]
            assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), f"{where}: refIds {ref_ids}"
            for t in targets:
                assert t.get("expr", "").strip(), f"{where}: a target without expr"
                assert t.get("datasource", p["datasource"]).get("uid") == "${datasource}", f"{where}: target datasource"
                # Every query is scoped to the chosen service and environment.
                assert '$service' in t["expr"] and '$environment' in t["expr"], f"{where}: {t['expr']!r} ignores $service/$environment"

        annotations = [a for a in d.get("annotations", {}).get("list", []) if not a.get("builtIn")]
        for a in annotations:
            assert a.get("datasource", {}).get("uid") == "${datasource}" and a.get("expr"), f"{name}: annotation {a.get('name')!r}"
        assert any("sidewatch_deployment_verdict" in a["expr"] and a.get("enable") for a in annotations), (
            f"{name}: no enabled deployment-verdict annotation"
        )


def test_service_dashboard_covers_the_service() -> None:
    d = load(DASHBOARDS / "sidewatch-service.json")
    exprs = [e for _w, e in expressions(d)]

    def shown(pattern: str) -> bool:
        return any(re.search(pattern, e, re.S) for e in exprs)

    assert shown(r"by \(deployment\).*deployment:http_requests:rate1m"), "request rate by deployment"
    assert shown(r"by \(deployment\).*deployment:http_request_errors:ratio1m"), "error ratio by deployment"
    assert shown(r"by \(deployment\).*deployment:http_request_duration_ms:p95_5m"), "p95 latency by deployment"
    assert shown(r"probe_success"), "probe success"
    assert shown(r"probe_duration_seconds"), "probe latency"
    assert shown(r'sidewatch_alerts\{[^}]*state="firing"'), "firing alerts"


def test_expressions_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run tests/setup.sh (apt-get install prometheus)"
    rules, where = [], []
    for path in dashboard_files():
        for w, expr in expressions(load(path)):
            rules.append(grafana_to_promql(expr))
            where.append(f"{path.name}: {w}")
    doc = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard_expr_{i}", "expr": e} for i, e in enumerate(rules)
    ]}]}
    file = tmp_path / "exprs.json"  # JSON is YAML: no quoting to get wrong
    file.write_text(json.dumps(doc, indent=1))
    check = subprocess.run([promtool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60)
    out = check.stdout + check.stderr
    if check.returncode != 0:
        bad = sorted({int(n) for n in re.findall(r"dashboard_expr_(\d+)", out)})
        detail = "\n".join(f"  {where[i]}: {rules[i]}" for i in bad)
        raise AssertionError(f"promtool check rules failed:\n{out}\n{detail}")


def test_recording_rules_unit_tests() -> None:
    run = subprocess.run(
        [str(sidewatch_bin()), "test", str(DASHBOARDS / "tests" / "recording-rules.test.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, f"sidewatch test exited {run.returncode}:\n{run.stdout}{run.stderr}"


def test_readme_lists_every_dashboard() -> None:
    readme = (DASHBOARDS / "README.md").read_text()
    for path in dashboard_files():
        assert path.name in readme, f"dashboards/README.md does not mention {path.name}"
        assert load(path)["uid"] in readme, f"dashboards/README.md does not give {path.name}'s uid"
    assert "recording-rules.yaml" in readme


# -- against a live agent -----------------------------------------------------------------

RULE_FILES = [REPO / "rules" / "python-service.yaml", DASHBOARDS / "recording-rules.yaml"]


@pytest.mark.timeout(240)
def test_every_queried_metric_is_exported(tmp_path: Path) -> None:
    wanted: dict[str, list[str]] = {}
    for path in dashboard_files():
        for where, expr in expressions(load(path)):
            for name in metric_names(expr):
                wanted.setdefault(name, []).append(f"{path.name}: {where}")
    assert wanted, "the dashboards query no metric at all"
    print(f"\n{len(wanted)} metrics queried by the dashboards: {', '.join(sorted(wanted))}")

    with StructlogApp(tmp_path, version="1.0.0", env={"APP_ERROR_RATIO": "0.02"}) as app:
        with Agent(tmp_path, {
            "service": {"name": "checkout-api", "environment": "test"},
            "logs": [{"name": "app", "paths": [str(app.log_path)], "format": "structlog", "start_at": "beginning"}],
            "probes": [{
                "name": "health", "url": app.url + "/health", "interval": "1s", "timeout": "2s",
                "expect": {"status": [200], "body_json": {"$.status": "ok"}}, "version_from": "$.version",
            }],
            "deployments": {"verify_window": "3s", "baseline_window": "30s", "probe_grace": "0s"},
            "rules": {"files": [str(p) for p in RULE_FILES]},
            # A collector that is down: the export series exist, the queue holds the logs.
            "export": {"otlp": {"endpoint": f"http://127.0.0.1:{free_port()}", "timeout": "1s"}},
        }) as agent:
            def traffic(n: int) -> None:
                for _ in range(n):
                    app.checkout()

            traffic(100)
            app.redeploy("1.0.1", env={"APP_ERROR_RATIO": "0.02"})
            traffic(100)

            seen: dict = {"names": set(), "verdicts": [], "deployments": set()}

            def all_exported() -> bool:
                if not agent.running:
                    raise AssertionError(f"sidewatch exited:\n{agent.process.tail()}")
                traffic(5)  # keep the 1m windows of the recording rules non-empty
                samples = parse_prometheus(agent.metrics_text())
                seen["names"] = {n for n, _l, _v in samples}
                # The deployment's verdict (the annotation's series) and the new version
                # in the by-deployment series: the test's own traffic reached them.
                seen["verdicts"] = [l for n, l, v in samples if n == "sidewatch_deployment_verdict" and v == 1]
                seen["deployments"] = {l.get("deployment") for n, l, _v in samples if n == "deployment:http_requests:rate1m"}
                return (
                    set(wanted) <= seen["names"]
                    and any(l["version"] == "1.0.1" for l in seen["verdicts"])
                    and "1.0.1" in seen["deployments"]
                )

            def missing() -> str:
                return "\n".join(
                    f"  {name}  (queried by {'; '.join(wanted[name])})"
                    for name in sorted(set(wanted) - seen["names"])
                ) + (
                    f"\nverdicts: {seen['verdicts']}; deployment:http_requests:rate1m deployments: "
                    f"{seen['deployments']}\n/metrics has: {', '.join(sorted(seen['names']))}"
                )

            try:
                wait_until(
                    all_exported, 60,
                    lambda: "every metric the dashboards query in /metrics, a verdict for 1.0.1 "
                    "and 1.0.1's request rate; missing:\n" + missing(),
                    interval=1.0,
                )
            finally:
                print(f"missing from /metrics: {sorted(set(wanted) - seen['names']) or 'none'}")
