"""Starts a real front and worker the way the manifests run them and checks
that every series read by the alerting/recording rules, the KEDA trigger
and the Grafana dashboard is exported by them.

The processes get the rendered ConfigMap files and container args of the
CPU overlay; only listen addresses (free loopback ports), the front address,
the model directory (the tiny TEST FIXTURE model) and the files the
Secrets would mount (a test API keys file and worker key) are replaced. One
short video is generated first, with a client key, so that every labelled
series exists.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

import binaries
import deploy_env
import manifests
import promql_names

# Series that come from elsewhere: Prometheus itself (up), the kubelet's
# cAdvisor and kube-state-metrics (both part of kube-prometheus-stack).
EXTERNAL_SERIES = {"up", "container_memory_working_set_bytes", "kube_pod_container_resource_limits"}
# Labels Prometheus attaches to every scraped series (target labels).
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}


def promql_expressions(objects, dashboard):
    """(where, expr) for every PromQL expression the deployment uses."""
    out = []
    for rule_obj in objects.of_kind("PrometheusRule"):
        for group in rule_obj["spec"]["groups"]:
            for r in group["rules"]:
                out.append(("rule %s" % (r.get("record") or r.get("alert")), r["expr"]))
    for so in objects.of_kind("ScaledObject"):
        for t in so["spec"]["triggers"]:
            out.append(("ScaledObject %s" % so["metadata"]["name"], t["metadata"]["query"]))
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            out.append(("panel %r" % p["title"], t["expr"]))
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
            if not m:
                raise AssertionError("unsupported variable query %r" % v["query"]["query"])
            out.append(("variable %s" % v["name"], m.group(1)))
    return out


def recording_rules(objects):
    return {r["record"] for o in objects.of_kind("PrometheusRule")
            for g in o["spec"]["groups"] for r in g["rules"] if "record" in r}


def unknown_series(expressions, families, recorded):
    """Problems: series or labels the expressions use that nothing exports."""
    names = binaries.series_names(families)
    problems = []
    for where, expr in expressions:
        for name, matcher in promql_names.selectors(expr):
            if name in recorded or name in EXTERNAL_SERIES:
                continue
            if name not in names:
                problems.append("%s: series %s is not exported" % (where, name))
                continue
            known = families[names[name]]["labels"] | TARGET_LABELS | {"le"}
            for label in promql_names.matcher_labels(matcher):
                if label not in known:
                    problems.append("%s: %s has no label %s" % (where, name, label))
    return problems


class LiveMetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        deploy_env.require("FRONT", "WORKER", "CLI", "MAKE_TINY_MODEL")
        cls.tmp = tempfile.mkdtemp(prefix="deploy-live-", dir=deploy_env.WORK_DIR)
        cls.objects = manifests.Objects(manifests.render(manifests.OVERLAYS["cpu"]))
        with open(os.path.join(manifests.K8S, "monitoring", "dashboards", "sparsevid.json")) as f:
            cls.dashboard = json.load(f)
        model = os.path.join(cls.tmp, "model")
        subprocess.run([deploy_env.MAKE_TINY_MODEL, model], check=True, capture_output=True,
                       timeout=120)
        # What the Secrets sparsevid-api-keys and sparsevid-worker-key hold.
        keys = os.path.join(cls.tmp, "api-keys.yaml")
        with open(keys, "w") as f:
            f.write("keys:\n"
                    "  - {name: dashboards, key: \"client-key-0123456789abcdef\", role: client}\n"
                    "  - {name: workers, key: \"worker-key-0123456789abcdef\", role: worker}\n")
        worker_key = os.path.join(cls.tmp, "worker.key")
        with open(worker_key, "w") as f:
            f.write("worker-key-0123456789abcdef\n")
        cls.front = cls.worker = None
        try:
            cls.front = binaries.Process(cls.argv("front", {
                "server.listen": "127.0.0.1:0", "metrics.listen": "127.0.0.1:0",
                "auth.api_keys_file": keys}),
                "front", cls.tmp)
            cls.worker = binaries.Process(cls.argv("worker", {
                "front.address": "127.0.0.1:%d" % cls.front.ready["grpc_port"],
                "model.dir": model, "health.address": "127.0.0.1:0",
                "metrics.address": "127.0.0.1:0", "engine.threads": "2",
                "front.api_key_file": worker_key}),
                "worker", cls.tmp, timeout=120)
            cls.generate = subprocess.run(
                [deploy_env.CLI, "-a", "127.0.0.1:%d" % cls.front.ready["grpc_port"],
                 "--timeout", "240", "generate", "a red circle moving left",
                 "-o", os.path.join(cls.tmp, "out.mp4"), "--steps", "2"],
                capture_output=True, text=True, timeout=300,
                env=dict(os.environ, SPARSEVID_API_KEY="client-key-0123456789abcdef"))
            cls.front_text = binaries.scrape(cls.front.ready["metrics_port"])
            cls.worker_text = binaries.scrape(cls.worker.ready["metrics_port"])
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def argv(cls, which, overrides):
        """The container's command line with the rendered config file."""
        d = cls.objects.get("Deployment", "sparsevid-" + which)
        c = manifests.container(d, which)
        cm = cls.objects.get_prefix("ConfigMap", "sparsevid-%s-config" % which)
        path = os.path.join(cls.tmp, which + ".yaml")
        with open(path, "w") as f:
            f.write(cm["data"][which + ".yaml"])
        flags = manifests.flag_args(c["args"])
        flags["config"] = path
        flags.update(overrides)
        binary = deploy_env.FRONT if which == "front" else deploy_env.WORKER
        argv = [binary]
        for k, v in flags.items():
            argv += ["--" + k, v]
        return argv

    @classmethod
    def tearDownClass(cls):
        for p in (cls.worker, cls.front):
            if p is not None:
                p.stop(timeout=60)
        # Failures carry the logs in their messages; the model is ~MBs.
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def families(self):
        fams = dict(binaries.parse_exposition(self.front_text))
        fams.update(binaries.parse_exposition(self.worker_text))
        return fams

    def test_job_ran_through_the_deployed_configuration(self):
        self.assertEqual(self.generate.returncode, 0,
                         "generate failed:\n%s\n%s\nfront log:\n%s\nworker log:\n%s" % (
                             self.generate.stdout, self.generate.stderr,
                             self.front.log_tail(), self.worker.log_tail()))
        fams = binaries.parse_exposition(self.worker_text)
        self.assertGreater(fams["sparsevid_worker_frames_generated_total"]["samples"], 0)
        m = re.search(r"^sparsevid_worker_frames_generated_total(?:\{\})? (\S+)$",
                      self.worker_text, re.M)
        self.assertGreater(float(m.group(1)), 0)

    def test_every_used_series_is_exported(self):
        exprs = promql_expressions(self.objects, self.dashboard)
        self.assertGreater(len(exprs), 30)
        problems = unknown_series(exprs, self.families(), recording_rules(self.objects))
        self.assertEqual(problems, [], "\n".join(problems))

    def test_check_catches_a_misspelt_series(self):
        # The check above must be able to fail: a renamed series and a wrong
        # label are both reported.
        fams = self.families()
        bad = [("x", "sum(sparsevid_queue_depthh)"),
               ("y", 'sum(sparsevid_jobs{stat="running"})')]
        self.assertEqual(len(unknown_series(bad, fams, set())), 2)

    def test_keda_query_reads_front_series(self):
        so = self.objects.get("ScaledObject", "sparsevid-worker")
        names = promql_names.metric_names(so["spec"]["triggers"][0]["metadata"]["query"])
        front = binaries.series_names(binaries.parse_exposition(self.front_text))
        self.assertTrue(names and names <= set(front), names)

    # Named to run last (unittest orders methods by name): stops both.
    def test_zz_sigterm_drains_both_processes_cleanly(self):
        # The preStop/grace-period settings rely on SIGTERM draining and
        # exiting 0 (worker first, as a node drain would, then the front).
        worker_code = self.worker.stop(timeout=60)
        self.assertEqual(worker_code, 0, self.worker.log_tail())
        front_code = self.front.stop(timeout=60)
        self.assertEqual(front_code, 0, self.front.log_tail())

    def test_ready_ports_match_the_deployment_shape(self):
        # Both binaries bound what they were told; the ports they announced
        # answer /metrics (checked by the scrape) and are distinct.
        self.assertNotEqual(self.front.ready["grpc_port"], self.front.ready["metrics_port"])
        self.assertNotEqual(self.worker.ready["health_port"], self.worker.ready["metrics_port"])


if __name__ == "__main__":
    unittest.main()
