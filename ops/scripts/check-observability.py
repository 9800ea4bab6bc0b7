#!/usr/bin/env python3
"""Checks that the dashboard and the alert rules only use metrics the services export.

    python3 ops/scripts/check-observability.py

1. Parses ops/grafana/taskstream-overview.json and ops/prometheus/alerts.yaml.
2. Collects every metric name `taskstream_...` their expressions use (dashboard targets and
   template variable queries, alert `expr`), with the histogram suffixes _bucket, _sum and _count
   stripped.
3. Collects the names the Rust sources register: string literals "taskstream_..." passed to the
   prometheus `register_*!` macros in the workspace's *.rs files (target/ and hidden directories
   skipped).
4. Fails (exit 1) listing every name used under ops/ that the code does not register.

It also fails when helm/taskstream/files/alerts.yaml (the copy the Helm chart's PrometheusRule
embeds) is not byte-identical to ops/prometheus/alerts.yaml, when an alert lacks its severity
label or its summary, description or runbook annotation, when a runbook link names a section
ops/RUNBOOK.md does not have, or when a dashboard panel has no description.

Standard library only, plus PyYAML for the alert rules: without PyYAML it says so, checks the
dashboard (and the copy of the rules) only, and exits 0 unless those checks fail.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "taskstream-overview.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yaml"
ALERTS_COPY = ROOT / "helm" / "taskstream" / "files" / "alerts.yaml"
RUNBOOK = ROOT / "ops" / "RUNBOOK.md"

METRIC = re.compile(r"\btaskstream_[a-z0-9_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
REGISTER = re.compile(r"\bregister_[a-z0-9_]+!\s*\(")
METRIC_LITERAL = re.compile(r'"(taskstream_[a-z0-9_]+)"')
SKIP_DIRS = {"target", "node_modules"}


def base_name(metric: str) -> str:
    return HISTOGRAM_SUFFIX.sub("", metric)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------ the code


def macro_arguments(text: str, start: int) -> str:
    """The text between the parenthesis at `start - 1` and its match, string literals respected."""
    depth, i, in_string = 1, start, False
    while i < len(text) and depth:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return text[start : i - 1]


def registered_metrics() -> dict[str, list[str]]:
    """Metric name -> the files that register it."""
    found: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".rs"):
                continue
            path = Path(dirpath) / name
            text = path.read_text(encoding="utf-8", errors="replace")
            for call in REGISTER.finditer(text):
                for literal in METRIC_LITERAL.finditer(macro_arguments(text, call.end())):
                    found.setdefault(literal.group(1), []).append(rel(path))
    return found


# ------------------------------------------------------------------------------ the dashboard


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expression) of every panel target and query variable."""
    exprs = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                exprs.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        for text in (query, variable.get("definition")):
            if isinstance(text, str) and text:
                exprs.append((f"variable {variable.get('name')!r}", text))
    return exprs


def dashboard_problems(dashboard: dict) -> list[str]:
    problems = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") != "row" and not panel.get("description", "").strip():
            problems.append(f"{rel(DASHBOARD)}: panel {panel.get('title')!r} has no description")
    return problems


# ------------------------------------------------------------------------------ the alerts


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def runbook_anchors() -> set[str]:
    if not RUNBOOK.exists():
        return set()
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchors.add(github_anchor(match.group(1)))
    return anchors


def alert_expressions_and_problems(rules: dict) -> tuple[list[tuple[str, str]], list[str]]:
    exprs, problems = [], []
    anchors = runbook_anchors()
    groups = rules.get("groups") if isinstance(rules, dict) else None
    if not groups:
        return exprs, [f"{rel(ALERTS)}: no rule groups"]
    for group in groups:
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record") or "?"
            exprs.append((f"rule {name!r}", str(rule.get("expr", ""))))
            if "alert" not in rule:
                continue
            where = f"{rel(ALERTS)}: alert {name}"
            if not rule.get("labels", {}).get("severity"):
                problems.append(f"{where} has no severity label")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook"):
                if not str(annotations.get(key, "")).strip():
                    problems.append(f"{where} has no {key} annotation")
            runbook = str(annotations.get("runbook", ""))
            if runbook:
                path, _, anchor = runbook.partition("#")
                if path != "ops/RUNBOOK.md" or not anchor:
                    problems.append(f"{where}: runbook {runbook!r} is not ops/RUNBOOK.md#<anchor>")
                elif anchor not in anchors:
                    problems.append(f"{where}: ops/RUNBOOK.md has no section #{anchor}")
    return exprs, problems


# ------------------------------------------------------------------------------ main


def metrics_in(exprs: list[tuple[str, str]]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for where, expr in exprs:
        for match in METRIC.finditer(expr):
            used.setdefault(base_name(match.group(0)), set()).add(where)
    return used


def main() -> int:
    problems: list[str] = []
    used: dict[str, set[str]] = {}

    def use(source: Path, exprs):
        for metric, places in metrics_in(exprs).items():
            used.setdefault(metric, set()).update(f"{rel(source)} ({p})" for p in places)

    try:
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        print(f"FAIL: cannot read {rel(DASHBOARD)}: {error}")
        return 1
    use(DASHBOARD, dashboard_expressions(dashboard))
    problems += dashboard_problems(dashboard)

    if not ALERTS_COPY.exists():
        problems.append(f"{rel(ALERTS_COPY)} is missing (a copy of {rel(ALERTS)})")
    elif ALERTS_COPY.read_bytes() != ALERTS.read_bytes():
        problems.append(
            f"{rel(ALERTS_COPY)} differs from {rel(ALERTS)}; copy it: "
            f"cp {rel(ALERTS)} {rel(ALERTS_COPY)}"
        )

    try:
        import yaml
    except ImportError:
        yaml = None
        print(f"PyYAML is not installed (pip install pyyaml): {rel(ALERTS)} not checked")
    if yaml is not None:
        try:
            rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            print(f"FAIL: cannot read {rel(ALERTS)}: {error}")
            return 1
        exprs, rule_problems = alert_expressions_and_problems(rules)
        use(ALERTS, exprs)
        problems += rule_problems

    registered = registered_metrics()
    exported = {base_name(name) for name in registered}
    if not exported:
        problems.append("no taskstream_* metric registered in any *.rs file (wrong root?)")
    for metric in sorted(set(used) - exported):
        places = ", ".join(sorted(used[metric]))
        problems.append(f"{metric} is used but no service exports it: {places}")

    print(f"metrics registered in the code ({len(registered)}):")
    for name in sorted(registered):
        print(f"  {name}  ({', '.join(sorted(set(registered[name])))})")
    print(f"metrics used by the dashboard and the alerts ({len(used)}): {', '.join(sorted(used))}")
    unused = sorted(exported - set(used))
    if unused:
        print(f"note: exported but not used under ops/: {', '.join(unused)}")

    if problems:
        print(f"FAIL: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    if yaml is None:
        print("ok: every metric the dashboard uses is exported (alert rules not checked: no PyYAML)")
    else:
        print("ok: every metric used under ops/ is exported, and the chart's copy of the rules matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
