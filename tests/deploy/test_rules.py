"""The PrometheusRule's rules, checked and unit-tested with promtool
(Debian package prometheus): every expression parses, and each alert fires
on a synthetic failure scenario and stays silent on a healthy one."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import yaml

import deploy_env
import manifests

NS = {"namespace": "sparsevid"}


def series(name, labels, values):
    lab = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    return {"series": "%s{%s}" % (name, lab), "values": values}


def alert_case(alertname, eval_time, input_series, fired_labels):
    """One promtool test: at eval_time the alert fires with exactly
    fired_labels (plus its own labels), or not at all if None."""
    return {
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [{
            "eval_time": eval_time,
            "alertname": alertname,
            "exp_alerts": [] if fired_labels is None else [{"exp_labels": fired_labels}],
        }],
    }


def latency_buckets(counts_per_minute):
    """sparsevid_request_duration_seconds buckets where every job lands in
    the bucket above the largest `le` with a zero count."""
    out = []
    for le, per_min in counts_per_minute:
        out.append(series("sparsevid_request_duration_seconds_bucket",
                          dict(NS, outcome="succeeded", le=le), "0+%dx60" % per_min))
    return out


# (name, test) pairs: each alert with a firing and a healthy scenario.
CASES = [
    ("queue growing fires", alert_case(
        "SparsevidQueueGrowing", "40m",
        [series("sparsevid_queue_depth", NS, "0+1x60")],
        dict(NS, alertname="SparsevidQueueGrowing", severity="warning"))),
    ("steady queue is fine", alert_case(
        "SparsevidQueueGrowing", "40m",
        [series("sparsevid_queue_depth", NS, "5x60")], None)),
    ("no workers with a queue fires", alert_case(
        "SparsevidNoWorkers", "10m",
        [series("sparsevid_workers_connected", NS, "0x20"),
         series("sparsevid_queue_depth", NS, "3x20")],
        dict(NS, alertname="SparsevidNoWorkers", severity="critical"))),
    ("no workers and nothing queued is fine", alert_case(
        "SparsevidNoWorkers", "10m",
        [series("sparsevid_workers_connected", NS, "0x20"),
         series("sparsevid_queue_depth", NS, "0x20")], None)),
    ("error ratio above 5% fires", alert_case(
        "SparsevidJobErrorRatioHigh", "30m",
        [series("sparsevid_jobs_finished_total", dict(NS, outcome="failed"), "0+1x40"),
         series("sparsevid_jobs_finished_total", dict(NS, outcome="succeeded"), "0+9x40")],
        dict(NS, alertname="SparsevidJobErrorRatioHigh", severity="critical"))),
    ("error ratio of 1% is fine", alert_case(
        "SparsevidJobErrorRatioHigh", "30m",
        [series("sparsevid_jobs_finished_total", dict(NS, outcome="failed"), "0+1x40"),
         series("sparsevid_jobs_finished_total", dict(NS, outcome="succeeded"), "0+99x40")],
        None)),
    ("p99 above 20 minutes fires", alert_case(
        "SparsevidLatencyP99High", "40m",
        latency_buckets([("600", 0), ("1200", 0), ("1800", 10), ("+Inf", 10)]),
        dict(NS, alertname="SparsevidLatencyP99High", severity="warning"))),
    ("p99 of 5 minutes is fine", alert_case(
        "SparsevidLatencyP99High", "40m",
        latency_buckets([("300", 10), ("600", 10), ("1200", 10), ("1800", 10), ("+Inf", 10)]),
        None)),
    ("dense-like density fires", alert_case(
        "SparsevidAttentionDensityDrift", "80m",
        [series("sparsevid_worker_attention_density_ratio", dict(NS, pod="w-1"), "1x100")],
        dict(NS, alertname="SparsevidAttentionDensityDrift", severity="warning"))),
    ("density near the trained keep ratio is fine", alert_case(
        "SparsevidAttentionDensityDrift", "80m",
        # 6 of 36 key blocks: the shipped model at its trained keep ratio 0.17
        [series("sparsevid_worker_attention_density_ratio", dict(NS, pod="w-1"), "0.167x100")],
        None)),
    ("front not scraped fires", alert_case(
        "SparsevidFrontDown", "5m",
        [series("up", dict(NS, job="sparsevid-front"), "0x10")],
        # absent() of a filtered vector carries no labels of the series.
        {"alertname": "SparsevidFrontDown", "severity": "critical"})),
    ("front up is fine", alert_case(
        "SparsevidFrontDown", "5m",
        [series("up", dict(NS, job="sparsevid-front"), "1x10")], None)),
    ("worker without link fires", alert_case(
        "SparsevidWorkerLinkDown", "10m",
        [series("sparsevid_worker_front_connected", dict(NS, pod="w-1"), "0x20")],
        dict(NS, pod="w-1", alertname="SparsevidWorkerLinkDown", severity="warning"))),
    ("queue-full rejections fire", alert_case(
        "SparsevidQueueFull", "15m",
        [series("sparsevid_rejections_total", dict(NS, reason="queue_full"), "0+5x20")],
        dict(NS, alertname="SparsevidQueueFull", severity="warning"))),
    ("invalid-request rejections are not queue-full", alert_case(
        "SparsevidQueueFull", "15m",
        [series("sparsevid_rejections_total", dict(NS, reason="invalid"), "0+5x20")], None)),
    ("steady refused keys fire", alert_case(
        "SparsevidAuthFailures", "20m",
        [series("sparsevid_auth_failures_total", dict(NS, reason="invalid"), "0+60x30")],
        dict(NS, alertname="SparsevidAuthFailures", severity="warning"))),
    ("missing keys and a rare bad key do not", alert_case(
        "SparsevidAuthFailures", "20m",
        [series("sparsevid_auth_failures_total", dict(NS, reason="missing"), "0+60x30"),
         series("sparsevid_auth_failures_total", dict(NS, reason="invalid"), "0+1x30")], None)),
    ("an invalid keys-file change fires", alert_case(
        "SparsevidApiKeysReloadFailed", "10m",
        [series("sparsevid_api_key_reloads_total", dict(NS, outcome="error"), "0x5 1x15")],
        dict(NS, alertname="SparsevidApiKeysReloadFailed", severity="warning"))),
    ("good keys-file changes do not", alert_case(
        "SparsevidApiKeysReloadFailed", "10m",
        [series("sparsevid_api_key_reloads_total", dict(NS, outcome="ok"), "0x5 1x15"),
         series("sparsevid_api_key_reloads_total", dict(NS, outcome="error"), "0x20")], None)),
    ("a failed journal record fires", alert_case(
        "SparsevidJournalUnwritable", "10m",
        [series("sparsevid_journal_writes_total", dict(NS, kind="record", outcome="error"),
                "0x5 1x15")],
        dict(NS, alertname="SparsevidJournalUnwritable", severity="critical"))),
    ("journal writes that work do not", alert_case(
        "SparsevidJournalUnwritable", "10m",
        [series("sparsevid_journal_writes_total", dict(NS, kind="record", outcome="ok"),
                "0+10x20"),
         series("sparsevid_journal_writes_total", dict(NS, kind="result", outcome="error"),
                "0x5 1x15")], None)),
    ("a failed result file fires", alert_case(
        "SparsevidJournalResultsNotSaved", "10m",
        [series("sparsevid_journal_writes_total", dict(NS, kind="result", outcome="error"),
                "0x5 1x15")],
        dict(NS, alertname="SparsevidJournalResultsNotSaved", severity="warning"))),
    ("saved result files do not", alert_case(
        "SparsevidJournalResultsNotSaved", "10m",
        [series("sparsevid_journal_writes_total", dict(NS, kind="result", outcome="ok"),
                "0+3x20"),
         series("sparsevid_journal_writes_total", dict(NS, kind="record", outcome="error"),
                "0x5 1x15")], None)),
    ("repeated requeues fire", alert_case(
        "SparsevidJobsRequeued", "20m",
        [series("sparsevid_jobs_requeued_total", NS, "0+1x30")],
        dict(NS, alertname="SparsevidJobsRequeued", severity="warning"))),
]


def without_annotations(groups):
    """The rules minus annotations: the unit tests check when alerts fire
    and with which labels; annotation templates are checked by
    `promtool check rules`."""
    out = []
    for g in groups:
        rules = []
        for r in g["rules"]:
            r = dict(r)
            r.pop("annotations", None)
            rules.append(r)
        out.append(dict(g, rules=rules))
    return out


class RulesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.promtool = shutil.which("promtool")
        if not cls.promtool:
            raise AssertionError("promtool not installed (Debian package prometheus; "
                                 "scripts/setup.sh installs it)")
        objs = manifests.Objects(manifests.render(manifests.OVERLAYS["cpu"]))
        cls.groups = objs.get("PrometheusRule", "sparsevid")["spec"]["groups"]
        cls.tmp = tempfile.mkdtemp(prefix="deploy-rules-", dir=deploy_env.WORK_DIR)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, name, doc):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        return path

    def test_promtool_check_rules(self):
        path = self.write("rules.yaml", {"groups": self.groups})
        proc = subprocess.run([self.promtool, "check", "rules", path], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_every_alert_has_a_firing_and_a_healthy_case(self):
        alerts = {r["alert"] for g in self.groups for r in g["rules"] if "alert" in r}
        fired = {c["alert_rule_test"][0]["alertname"] for _, c in CASES
                 if c["alert_rule_test"][0]["exp_alerts"]}
        silent = {c["alert_rule_test"][0]["alertname"] for _, c in CASES
                  if not c["alert_rule_test"][0]["exp_alerts"]}
        self.assertEqual(fired, alerts)
        # A link-down worker and requeues have no meaningful "healthy" twin
        # beyond the metric being absent.
        self.assertEqual(alerts - silent, {"SparsevidWorkerLinkDown", "SparsevidJobsRequeued"})

    def test_dashboard_and_keda_queries_parse(self):
        # promtool has no offline query checker, so each query becomes a
        # recording rule of a throw-away file that `check rules` parses.
        # Grafana's variables are replaced by values of the right kind.
        with open(os.path.join(manifests.K8S, "monitoring", "dashboards", "sparsevid.json")) as f:
            board = json.load(f)
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        objs = manifests.Objects(manifests.render(manifests.OVERLAYS["cpu"]))
        exprs += [t["metadata"]["query"] for so in objs.of_kind("ScaledObject")
                  for t in so["spec"]["triggers"]]
        self.assertGreater(len(exprs), 30)
        rules = [{"record": "check:query_%d:expr" % i,
                  "expr": e.replace("$__rate_interval", "1m").replace("$namespace", "sparsevid")}
                 for i, e in enumerate(exprs)]
        path = self.write("queries.yaml", {"groups": [{"name": "queries", "rules": rules}]})
        proc = subprocess.run([self.promtool, "check", "rules", path], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_every_alert_is_documented(self):
        with open(os.path.join(deploy_env.REPO, "docs", "operations.md")) as f:
            guide = f.read()
        for g in self.groups:
            for r in g["rules"]:
                if "alert" in r:
                    self.assertIn("`%s`" % r["alert"], guide, "docs/operations.md §8")

    def test_alert_scenarios(self):
        self.write("rules_unit.yaml", {"groups": without_annotations(self.groups)})
        for name, case in CASES:
            with self.subTest(name):
                path = self.write("case.yaml", {
                    "rule_files": ["rules_unit.yaml"],
                    "evaluation_interval": "1m",
                    "tests": [case],
                })
                proc = subprocess.run([self.promtool, "test", "rules", path], capture_output=True,
                                      text=True, timeout=60, cwd=self.tmp)
                self.assertEqual(proc.returncode, 0, "%s:\n%s%s" % (name, proc.stdout, proc.stderr))

    def test_error_ratio_recording_rule(self):
        self.write("rules_unit.yaml", {"groups": without_annotations(self.groups)})
        path = self.write("ratio.yaml", {
            "rule_files": ["rules_unit.yaml"],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": [
                    series("sparsevid_jobs_finished_total", dict(NS, outcome="failed"), "0+1x30"),
                    series("sparsevid_jobs_finished_total", dict(NS, outcome="succeeded"), "0+2x30"),
                    series("sparsevid_jobs_finished_total", dict(NS, outcome="cancelled"), "0+1x30"),
                ],
                "promql_expr_test": [{
                    "expr": "sparsevid:job_error_ratio:rate10m",
                    "eval_time": "20m",
                    "exp_samples": [{"labels": 'sparsevid:job_error_ratio:rate10m{namespace="sparsevid"}',
                                     "value": 0.25}],
                }],
            }],
        })
        proc = subprocess.run([self.promtool, "test", "rules", path], capture_output=True,
                              text=True, timeout=60, cwd=self.tmp)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)


if __name__ == "__main__":
    unittest.main()
