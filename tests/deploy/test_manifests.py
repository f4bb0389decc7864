"""Invariants of the rendered Kubernetes manifests (deploy/k8s).

Every overlay is rendered with `kubectl kustomize`; the checks read the
rendered objects and compare them with what the real binaries accept
(their --help) and what their configs say.
"""
import os
import re
import unittest

import yaml

import binaries
import deploy_env
import manifests

FRONT_CONFIG = os.path.join(deploy_env.REPO, "configs", "front.yaml")
WORKER_CONFIG = os.path.join(deploy_env.REPO, "configs", "worker.yaml")
BASE_CONFIG_DIR = os.path.join(manifests.K8S, "base", "config")
DOCKERFILE = os.path.join(deploy_env.REPO, "deploy", "docker", "Dockerfile")
# What the worker does on SIGTERM after drain.grace_seconds: cancel the
# running job, wait up to 30 s for it, then stop its health server within
# 1 s (worker/main.cc).
WORKER_CANCEL_WAIT_SECONDS = 30 + 1
# What the front does after its grace period: fail running jobs and give
# streams this long to deliver final events (server/main.cc).
FRONT_SHUTDOWN_SECONDS = 2


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def prestop_sleep_seconds(container):
    """Seconds of a `sleep N` preStop hook, 0 without one."""
    hook = container.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0
    cmd = hook["exec"]["command"]
    if os.path.basename(cmd[0]) != "sleep" or len(cmd) != 2:
        raise AssertionError("preStop is not a plain sleep: %r" % cmd)
    return int(cmd[1])


def quantity_bytes(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError("unsupported memory quantity %r" % q)
    return int(m.group(1)) * units.get(m.group(2), 1)


def quantity_cpus(q):
    s = str(q)
    return int(s[:-1]) / 1000.0 if s.endswith("m") else float(s)


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


class Rendered(unittest.TestCase):
    """Loads every overlay once, plus both binaries' flags."""

    @classmethod
    def setUpClass(cls):
        deploy_env.require("FRONT", "WORKER")
        cls.objects = {name: manifests.Objects(manifests.render(path))
                       for name, path in manifests.OVERLAYS.items()}
        cls.front_flags = binaries.help_flags(deploy_env.FRONT)
        cls.worker_flags = binaries.help_flags(deploy_env.WORKER)

    def clusters(self):
        """(overlay name, objects) of the two full deployments."""
        return [(n, self.objects[n]) for n in ("cpu", "gpu")]

    def front(self, objs):
        d = objs.get("Deployment", "sparsevid-front")
        return d, manifests.container(d, "front")

    def worker(self, objs):
        d = objs.get("Deployment", "sparsevid-worker")
        return d, manifests.container(d, "worker")

    def effective(self, objs, which):
        """The config the container would run with: --help defaults, then
        the file its ConfigMap mounts, then its args."""
        if which == "front":
            _, c = self.front(objs)
            defaults, cm_prefix, key = self.front_flags, "sparsevid-front-config", "front.yaml"
        else:
            _, c = self.worker(objs)
            defaults, cm_prefix, key = self.worker_flags, "sparsevid-worker-config", "worker.yaml"
        flags = manifests.flag_args(c.get("args", []))
        self.assertEqual(flags.pop("config"), "/etc/sparsevid/" + key)
        cm = objs.get_prefix("ConfigMap", cm_prefix)
        tree = yaml.safe_load(cm["data"][key])
        defaults = {k: v for k, v in defaults.items() if k not in ("config", "help", "version")}
        return binaries.effective_config(defaults, tree, flags)


class ManifestTest(Rendered):

    def test_config_copies_match_configs_dir(self):
        for name, src in (("front.yaml", FRONT_CONFIG), ("worker.yaml", WORKER_CONFIG)):
            with open(src) as a, open(os.path.join(BASE_CONFIG_DIR, name)) as b:
                self.assertEqual(a.read(), b.read(),
                                 "deploy/k8s/base/config/%s differs from configs/%s: "
                                 "run deploy/k8s/sync-configs.sh" % (name, name))

    def test_configmaps_carry_the_config_files(self):
        for overlay, objs in self.clusters():
            for prefix, key, src in (("sparsevid-front-config", "front.yaml", FRONT_CONFIG),
                                     ("sparsevid-worker-config", "worker.yaml", WORKER_CONFIG)):
                cm = objs.get_prefix("ConfigMap", prefix)
                with open(src) as f:
                    self.assertEqual(cm["data"][key], f.read(), overlay)
                # The Deployment mounts exactly this generated ConfigMap.
                d = objs.get("Deployment", "sparsevid-" + key.split(".")[0])
                names = [v["configMap"]["name"] for v in d["spec"]["template"]["spec"]["volumes"]
                         if "configMap" in v]
                self.assertEqual(names, [cm["metadata"]["name"]], overlay)

    def test_every_flag_exists_in_the_binary(self):
        for overlay, objs in self.clusters():
            for which, flags in (("front", self.front_flags), ("worker", self.worker_flags)):
                c = (self.front if which == "front" else self.worker)(objs)[1]
                for flag in manifests.flag_args(c.get("args", [])):
                    self.assertIn(flag, flags, "%s: --%s is not a flag of sparsevid-%s" % (
                        overlay, flag, which))

    def test_config_keys_exist_in_the_binary(self):
        for path, flags in ((FRONT_CONFIG, self.front_flags), (WORKER_CONFIG, self.worker_flags)):
            for key in binaries.flatten_yaml(load_yaml(path)):
                self.assertIn(key, flags, "%s: key %s unknown to the binary" % (path, key))

    def test_front_ports_match_what_it_binds(self):
        for overlay, objs in self.clusters():
            eff = self.effective(objs, "front")
            d, c = self.front(objs)
            grpc_port = binaries.port_of(eff["server.listen"])
            metrics_port = binaries.port_of(eff["metrics.listen"])
            self.assertEqual(manifests.container_port(c, "grpc"), grpc_port, overlay)
            self.assertEqual(manifests.container_port(c, "metrics"), metrics_port, overlay)
            svc = objs.get("Service", "sparsevid-front")
            self.assertTrue(labels_match({"matchLabels": svc["spec"]["selector"]},
                                         d["spec"]["template"]["metadata"]["labels"]))
            ports = {p["name"]: p for p in svc["spec"]["ports"]}
            self.assertEqual(ports["grpc"]["targetPort"], "grpc")
            self.assertEqual(ports["grpc"]["port"], grpc_port)
            self.assertEqual(ports["metrics"]["targetPort"], "metrics")

    def test_worker_dials_the_front_service(self):
        for overlay, objs in self.clusters():
            eff = self.effective(objs, "worker")
            host, port = eff["front.address"].rsplit(":", 1)
            svc = objs.get("Service", "sparsevid-front")
            self.assertIn(host, ("sparsevid-front", "sparsevid-front.sparsevid.svc",
                                 "sparsevid-front.sparsevid.svc.cluster.local"), overlay)
            self.assertIn(int(port), [p["port"] for p in svc["spec"]["ports"]
                                      if p["targetPort"] == "grpc"], overlay)

    def test_worker_ports_match_what_it_binds(self):
        for overlay, objs in self.clusters():
            eff = self.effective(objs, "worker")
            _, c = self.worker(objs)
            self.assertEqual(manifests.container_port(c, "health"),
                             binaries.port_of(eff["health.address"]), overlay)
            self.assertEqual(manifests.container_port(c, "metrics"),
                             binaries.port_of(eff["metrics.address"]), overlay)

    def test_probes_use_grpc_health_on_the_health_port(self):
        for overlay, objs in self.clusters():
            _, front = self.front(objs)
            grpc_port = manifests.container_port(front, "grpc")
            for probe in ("livenessProbe", "readinessProbe"):
                self.assertEqual(front[probe]["grpc"]["port"], grpc_port, (overlay, probe))
            # Readiness asks for the public service: NOT_SERVING while draining.
            self.assertEqual(front["readinessProbe"]["grpc"].get("service"),
                             "sparsevid.v1.VideoService")
            _, worker = self.worker(objs)
            health = manifests.container_port(worker, "health")
            self.assertEqual(worker["readinessProbe"]["grpc"]["port"], health, overlay)
            # Worker liveness must not follow the gRPC status, which reports
            # the front link (see worker-deployment.yaml): a TCP check on the
            # same port.
            for probe in ("livenessProbe", "startupProbe"):
                self.assertEqual(worker[probe]["tcpSocket"]["port"], "health", (overlay, probe))
            # Start-up covers a model load of at least 5 minutes.
            sp = worker["startupProbe"]
            self.assertGreaterEqual(sp["periodSeconds"] * sp["failureThreshold"], 300)

    def test_grace_period_covers_the_drain(self):
        for overlay, objs in self.clusters():
            d, c = self.front(objs)
            eff = self.effective(objs, "front")
            need = (prestop_sleep_seconds(c) + float(eff["drain.grace_seconds"])
                    + FRONT_SHUTDOWN_SECONDS)
            self.assertGreaterEqual(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                                    need, overlay)
            self.assertGreater(prestop_sleep_seconds(c), 0, "front needs a preStop delay")
            d, c = self.worker(objs)
            weff = self.effective(objs, "worker")
            need = (prestop_sleep_seconds(c) + float(weff["drain.grace_seconds"])
                    + WORKER_CANCEL_WAIT_SECONDS)
            self.assertGreaterEqual(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                                    need, overlay)
            # A job running on a worker is bounded by the front's drain too;
            # the worker must not be cut shorter than the front allows.
            self.assertGreaterEqual(float(weff["drain.grace_seconds"]),
                                    float(eff["drain.grace_seconds"]), overlay)

    def test_front_memory_limit_holds_the_result_store(self):
        for overlay, objs in self.clusters():
            _, c = self.front(objs)
            eff = self.effective(objs, "front")
            limit = quantity_bytes(c["resources"]["limits"]["memory"])
            self.assertGreaterEqual(limit, int(eff["results.cap_bytes"]) + (512 << 20), overlay)

    def test_resources_and_security(self):
        with open(DOCKERFILE) as f:
            uid = int(re.search(r"^ARG APP_UID=(\d+)$", f.read(), re.M).group(1))
        for overlay, objs in self.clusters():
            for d in objs.of_kind("Deployment"):
                spec = d["spec"]["template"]["spec"]
                self.assertTrue(spec["securityContext"]["runAsNonRoot"])
                self.assertEqual(spec["securityContext"]["runAsUser"], uid)
                self.assertFalse(spec.get("automountServiceAccountToken", True))
                for c in spec["containers"]:
                    r = c["resources"]
                    self.assertIn("memory", r["requests"], c["name"])
                    self.assertIn("cpu", r["requests"], c["name"])
                    self.assertIn("memory", r["limits"], c["name"])
                    self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
                    self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
                    self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])

    def test_pods_rank_above_default_workloads_without_preempting(self):
        for overlay, objs in self.clusters():
            pc = objs.get("PriorityClass", "sparsevid")
            self.assertEqual(pc["preemptionPolicy"], "Never")
            self.assertGreater(pc["value"], 0)
            self.assertFalse(pc.get("globalDefault", False))
            for d in objs.of_kind("Deployment"):
                self.assertEqual(d["spec"]["template"]["spec"]["priorityClassName"], "sparsevid")

    def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_does_not(self):
        _, gpu = self.worker(self.objects["gpu"])
        d, _ = self.worker(self.objects["gpu"])
        spec = d["spec"]["template"]["spec"]
        self.assertGreaterEqual(int(gpu["resources"]["limits"]["nvidia.com/gpu"]), 1)
        self.assertIn("nvidia.com/gpu.present", spec["nodeSelector"])
        self.assertTrue(any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]))
        self.assertTrue(self.effective(self.objects["gpu"], "worker")["engine.device"]
                        .startswith("cuda"))
        self.assertTrue(gpu["image"].endswith("sparsevid-worker-cuda:0.1.0"), gpu["image"])
        _, cpu = self.worker(self.objects["cpu"])
        self.assertNotIn("nvidia.com/gpu", cpu["resources"].get("limits", {}))
        eff = self.effective(self.objects["cpu"], "worker")
        self.assertEqual(eff["engine.device"], "cpu")
        # Threads follow the CPU limit (0 would mean every core of the node).
        self.assertEqual(int(eff["engine.threads"]),
                         int(quantity_cpus(cpu["resources"]["limits"]["cpu"])))
        self.assertTrue(cpu["image"].endswith("sparsevid-worker-cpu:0.1.0"), cpu["image"])

    def test_gpu_overlay_device_is_one_the_engine_accepts(self):
        # The engine's device grammar (worker/engine/pipeline.cc
        # CreateBackend), as the binary's --help states it; tests/deploy/
        # test_gpu_worker.py runs the binary with the value itself.
        self.assertIn("cpu or cuda[:N]",
                      binaries.help_description(deploy_env.WORKER, "engine.device"))
        device = self.effective(self.objects["gpu"], "worker")["engine.device"]
        m = re.fullmatch(r"cuda(?::(\d+))?", device)
        self.assertIsNotNone(m, "GPU overlay: --engine.device %r is not cuda or cuda:N" % device)
        # The device plugin shows the container only its own GPUs, numbered
        # from 0: the index must be below the GPU limit.
        _, c = self.worker(self.objects["gpu"])
        self.assertLess(int(m.group(1) or 0), int(c["resources"]["limits"]["nvidia.com/gpu"]))

    def test_gpu_nodes_match_what_the_cuda_image_was_built_for(self):
        with open(DOCKERFILE) as f:
            text = f.read()
        arch = re.search(r"^ARG CUDA_ARCHITECTURES=(\S+)$", text, re.M).group(1)
        cuda_major = int(re.search(r"^ARG CUDA_VERSION=(\d+)\.\d+$", text, re.M).group(1))
        d, _ = self.worker(self.objects["gpu"])
        terms = (d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
                 ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"])
        self.assertEqual(len(terms), 1)
        exprs = {e["key"]: e for e in terms[0]["matchExpressions"]}
        # sm_90a code runs on compute capability 9.x alone (GFD's label).
        majors = sorted({str(int(re.match(r"\d+", a).group()) // 10) for a in arch.split(";")})
        cc = exprs["nvidia.com/gpu.compute.major"]
        self.assertEqual((cc["operator"], sorted(cc["values"])), ("In", majors))
        # The node's driver must support the image's CUDA major version.
        drv = exprs["nvidia.com/cuda.runtime.major"]
        self.assertEqual((drv["operator"], drv["values"]), ("Gt", [str(cuda_major - 1)]))

    def test_selectors_of_pdb_and_network_policies_match_pods(self):
        for overlay, objs in self.clusters():
            pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                    for d in objs.of_kind("Deployment")}
            for d in objs.of_kind("Deployment"):
                self.assertTrue(labels_match(d["spec"]["selector"],
                                             d["spec"]["template"]["metadata"]["labels"]))
            pdb = objs.get("PodDisruptionBudget", "sparsevid-worker")
            self.assertTrue(labels_match(pdb["spec"]["selector"], pods["sparsevid-worker"]))
            self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
            for np in objs.of_kind("NetworkPolicy"):
                matched = [n for n, labels in pods.items()
                           if labels_match(np["spec"]["podSelector"], labels)]
                self.assertEqual(len(matched), 1, np["metadata"]["name"])

    def test_network_policy_allows_only_the_intended_peers(self):
        objs = self.objects["cpu"]
        pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                for d in objs.of_kind("Deployment")}
        _, front = self.front(objs)
        front_ports = {p["name"]: p["containerPort"] for p in front["ports"]}
        fnp = objs.get("NetworkPolicy", "sparsevid-front-ingress")
        wnp = objs.get("NetworkPolicy", "sparsevid-worker")
        self.assertEqual(fnp["spec"]["policyTypes"], ["Ingress"])
        seen_ports = set()
        for rule in fnp["spec"]["ingress"]:
            ports = {p["port"] for p in rule["ports"]}
            seen_ports |= ports
            peers = rule["from"]
            self.assertTrue(peers, "an ingress rule without `from` admits everyone")
            if ports == {"metrics"}:
                for peer in peers:
                    self.assertEqual(peer["podSelector"]["matchLabels"],
                                     {"app.kubernetes.io/name": "prometheus"})
            else:
                self.assertEqual(ports, {"grpc"})
                self.assertTrue(any(labels_match(p.get("podSelector", {}), pods["sparsevid-worker"])
                                    and "namespaceSelector" not in p for p in peers),
                                "workers must reach the front's gRPC port")
                for p in peers:
                    self.assertFalse(p.get("namespaceSelector") == {} and not p.get("podSelector"),
                                     "gRPC port open to every namespace")
        self.assertEqual(seen_ports, set(front_ports))
        # Workers: ingress only for scraping; egress only to the front + DNS.
        self.assertEqual(sorted(wnp["spec"]["policyTypes"]), ["Egress", "Ingress"])
        self.assertEqual(len(wnp["spec"]["ingress"]), 1)
        rule = wnp["spec"]["ingress"][0]
        self.assertEqual([p["port"] for p in rule["ports"]], ["metrics"])
        self.assertEqual(rule["from"][0]["podSelector"]["matchLabels"],
                         {"app.kubernetes.io/name": "prometheus"})
        egress_to_front = [r for r in wnp["spec"]["egress"]
                           if any(labels_match(t.get("podSelector", {}), pods["sparsevid-front"])
                                  and t.get("podSelector") for t in r["to"])]
        self.assertEqual(len(egress_to_front), 1)
        self.assertEqual([p["port"] for p in egress_to_front[0]["ports"]], [front_ports["grpc"]])
        for r in wnp["spec"]["egress"]:
            if r not in egress_to_front:
                self.assertEqual({p["port"] for p in r["ports"]}, {53}, "only DNS besides the front")

    def test_monitors_select_the_metrics_ports(self):
        for overlay, objs in self.clusters():
            svc = objs.get("Service", "sparsevid-front")
            sm = objs.get("ServiceMonitor", "sparsevid-front")
            self.assertTrue(labels_match(sm["spec"]["selector"], svc["metadata"]["labels"]))
            self.assertIn(sm["spec"]["endpoints"][0]["port"], [p["name"] for p in svc["spec"]["ports"]])
            self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
            d, c = self.worker(objs)
            pm = objs.get("PodMonitor", "sparsevid-worker")
            self.assertTrue(labels_match(pm["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]))
            manifests.container_port(c, pm["spec"]["podMetricsEndpoints"][0]["port"])

    def test_scaledobject_targets_the_workers(self):
        for overlay, objs in self.clusters():
            so = objs.get("ScaledObject", "sparsevid-worker")
            self.assertEqual(so["spec"]["scaleTargetRef"]["name"], "sparsevid-worker")
            self.assertEqual(so["spec"]["scaleTargetRef"].get("kind", "Deployment"), "Deployment")
            self.assertGreaterEqual(so["spec"]["minReplicaCount"], 1, "scale to zero is opt-in")
            self.assertGreater(so["spec"]["maxReplicaCount"], so["spec"]["minReplicaCount"])
            # KEDA's HPA owns the worker count: a replicas field would reset
            # it on every apply.
            self.assertNotIn("replicas", objs.get("Deployment", "sparsevid-worker")["spec"])
            (trigger,) = so["spec"]["triggers"]
            self.assertEqual(trigger["type"], "prometheus")
            self.assertIn('namespace="%s"' % so["metadata"]["namespace"], trigger["metadata"]["query"])
            # One job per worker slot.
            eff = self.effective(objs, "worker")
            self.assertEqual(float(trigger["metadata"]["threshold"]), float(eff["worker.capacity"]))

    def test_everything_lives_in_the_sparsevid_namespace(self):
        for name, objs in self.objects.items():
            for d in objs.docs:
                # Cluster-scoped (kubectl 1.20's kustomize still stamps a
                # namespace on PriorityClass; the API server ignores it).
                if d["kind"] in ("Namespace", "PriorityClass"):
                    continue
                self.assertEqual(d["metadata"].get("namespace"), "sparsevid",
                                 "%s: %s/%s" % (name, d["kind"], d["metadata"]["name"]))

    def test_api_keys_come_from_the_secrets(self):
        # Each binary's key file lies in a read-only mount of its Secret, and
        # the flag is one the binary has (test_every_flag_exists_in_the_binary).
        for overlay, objs in self.clusters():
            for which, flag, secret in (("front", "auth.api_keys_file", "sparsevid-api-keys"),
                                        ("worker", "front.api_key_file",
                                         "sparsevid-worker-key")):
                d = objs.get("Deployment", "sparsevid-" + which)
                c = manifests.container(d, which)
                path = manifests.flag_args(c["args"]).get(flag)
                self.assertTrue(path, "%s: %s has no --%s" % (overlay, which, flag))
                volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
                mounts = [m for m in c["volumeMounts"]
                          if path.startswith(m["mountPath"].rstrip("/") + "/")]
                self.assertEqual(len(mounts), 1, "%s: %s not under one mount" % (overlay, path))
                self.assertTrue(mounts[0].get("readOnly"), overlay)
                self.assertEqual(volumes[mounts[0]["name"]].get("secret", {}).get("secretName"),
                                 secret, "%s: %s" % (overlay, which))

    def test_secret_placeholders_are_empty_and_not_applied(self):
        path = os.path.join(manifests.K8S, "future", "secrets.yaml")
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        self.assertEqual({d["metadata"]["name"] for d in docs},
                         {"sparsevid-front-tls", "sparsevid-api-keys", "sparsevid-worker-key"})
        for d in docs:
            self.assertTrue(all(v == "" for v in d.get("stringData", {}).values()))
            self.assertNotIn("data", d)
        for objs in self.objects.values():
            self.assertEqual(objs.of_kind("Secret"), [])

    def test_gateway_routes_the_public_api_to_the_front(self):
        route = self.objects["gateway"].get("GRPCRoute", "sparsevid")
        svc = self.objects["cpu"].get("Service", "sparsevid-front")
        grpc_port = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"][0]
        for rule in route["spec"]["rules"]:
            for m in rule["matches"]:
                self.assertEqual(m["method"]["service"], "sparsevid.v1.VideoService")
            for b in rule["backendRefs"]:
                self.assertEqual((b["name"], b["port"]), ("sparsevid-front", grpc_port))

    def test_prometheus_rules_are_well_formed(self):
        rule = self.objects["cpu"].get("PrometheusRule", "sparsevid")
        records = set()
        alerts = 0
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                if "record" in r:
                    self.assertRegex(r["record"], r"^sparsevid:[a-z0-9_]+:[a-z0-9_]+$")
                    records.add(r["record"])
                else:
                    alerts += 1
                    self.assertRegex(r["alert"], r"^Sparsevid[A-Za-z0-9]+$")
                    self.assertIn(r["labels"]["severity"], ("warning", "critical"))
                    self.assertIn("summary", r["annotations"])
                    self.assertIn("description", r["annotations"])
                    self.assertIn("for", r)
        self.assertGreaterEqual(alerts, 6)

    def test_trained_keep_ratio_rule_matches_the_front_config(self):
        rule = self.objects["cpu"].get("PrometheusRule", "sparsevid")
        exprs = {r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]
                 if "record" in r}
        value = float(re.fullmatch(r"vector\(([0-9.]+)\)", exprs["sparsevid:model_keep_ratio:trained"])
                      .group(1))
        eff = self.effective(self.objects["cpu"], "front")
        self.assertAlmostEqual(value, float(eff["limits.default_keep_ratio"]))
        model_yaml = os.path.join(deploy_env.REPO, "models", "sparsevid-shapes", "model.yaml")
        if os.path.exists(model_yaml):
            self.assertAlmostEqual(value, float(load_yaml(model_yaml)["attention"]["keep_ratio"]))


if __name__ == "__main__":
    unittest.main()
