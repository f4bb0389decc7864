"""deploy/ lints clean and its generated files are up to date."""
import json
import os
import shutil
import subprocess
import sys
import unittest

import deploy_env

DEPLOY = os.path.join(deploy_env.REPO, "deploy")
DASHBOARDS = os.path.join(DEPLOY, "k8s", "monitoring", "dashboards")


class LintTest(unittest.TestCase):

    def test_yamllint_clean(self):
        yamllint = shutil.which("yamllint")
        self.assertIsNotNone(yamllint, "yamllint not installed (scripts/setup.sh installs it)")
        proc = subprocess.run([yamllint, "--strict", "-c", os.path.join(DEPLOY, ".yamllint.yaml"),
                               "deploy"], capture_output=True, text=True, timeout=120,
                              cwd=deploy_env.REPO)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_dashboard_matches_its_generator(self):
        sys.path.insert(0, DASHBOARDS)
        try:
            import generate_dashboard
        finally:
            sys.path.pop(0)
        with open(os.path.join(DASHBOARDS, "sparsevid.json")) as f:
            committed = f.read()
        self.assertEqual(committed, generate_dashboard.render(),
                         "sparsevid.json is stale: run generate_dashboard.py")

    def test_dashboard_panels_use_the_datasource_variable(self):
        with open(os.path.join(DASHBOARDS, "sparsevid.json")) as f:
            board = json.load(f)
        ids = [p["id"] for p in board["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        titles = {p["title"] for p in board["panels"]}
        # The views the operations guide refers to.
        for wanted in ("Queue depth", "Queue wait", "End-to-end job latency", "Frames generated /s",
                       "Denoise steps /s", "Attention density", "Attention share of step time",
                       "Cancel latency", "RPC errors /s by code", "Workers", "Worker memory peak"):
            self.assertIn(wanted, titles)
        for p in board["panels"]:
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                if "sparsevid:" in t["expr"]:
                    continue  # recording rules carry no target labels of their own
                self.assertIn('namespace="$namespace"', t["expr"], p["title"])


if __name__ == "__main__":
    unittest.main()
