#!/usr/bin/env python3
"""bench/attention/targets.py against the logs of a real H100 run
(bench/attention/results/h100-v27-*.log, the ninth session's final call)
and against edited copies of them, so that a parsing or comparison slip
shows up as a wrong status."""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "attention"))
import targets  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "attention", "results")


def read(name):
    with open(os.path.join(RESULTS, name), encoding="utf-8") as f:
        return f.read()


class TargetsTest(unittest.TestCase):
    def setUp(self):
        self.bench = read("h100-v27-bench.log")
        self.peers = read("h100-v27-peers.log")

    def status(self, rows):
        return {r[0]: r[5] for r in rows}

    def test_v27_run(self):
        rows = targets.check(self.bench, self.peers)
        by = {r[0]: r for r in rows}
        self.assertEqual(len(rows), len(targets.TARGETS))
        self.assertAlmostEqual(by["sparse bf16, 1.3B keep 3 %"][1], 0.331)
        flex = by["sparse bf16 vs FlexAttention, same block lists"]
        self.assertAlmostEqual(flex[2], 0.543)
        self.assertAlmostEqual(flex[3], 0.543 / 0.331)
        self.assertAlmostEqual(by["sparse bf16 vs SDPA FlashAttention-2"][2], 17.914)
        self.assertAlmostEqual(by["sparse low-bit, 14B keep 3 %"][1], 3.978)
        self.assertAlmostEqual(by["whole module bf16, 1.3B keep 3 %"][1], 0.862)
        st = self.status(rows)
        self.assertEqual(st["whole module bf16, 1.3B keep 3 %"], "NOT MET")
        self.assertEqual(st["whole module bf16 vs SLA Triton module"], "NOT MET")
        self.assertEqual(sum(s == "met" for s in st.values()), 6)

    def test_a_slower_kernel_fails_its_targets(self):
        bench = self.bench.replace("1.3B  bf16     0.03  sparse        0.331",
                                   "1.3B  bf16     0.03  sparse        0.431")
        self.assertNotEqual(bench, self.bench)
        st = self.status(targets.check(bench, self.peers))
        self.assertEqual(st["sparse bf16, 1.3B keep 3 %"], "NOT MET")
        self.assertEqual(st["sparse bf16 vs FlexAttention, same block lists"], "NOT MET")  # 1.26x
        self.assertEqual(st["sparse bf16 vs SDPA FlashAttention-2"], "met")  # 41.6x

    def test_missing_rows_are_named(self):
        st = self.status(targets.check(self.bench, ""))
        self.assertIn("no Flex-blocksparse row", st["sparse bf16 vs FlexAttention, same block lists"])
        only_a = "\n".join(l for l in self.bench.splitlines() if not l.startswith("14B"))
        st = self.status(targets.check(only_a, self.peers))
        self.assertIn("not in the run", st["sparse low-bit, 14B keep 3 %"])

    def test_command_line(self):
        script = os.path.join(ROOT, "bench", "attention", "targets.py")
        bench, peers = (os.path.join(RESULTS, n) for n in ("h100-v27-bench.log", "h100-v27-peers.log"))
        r = subprocess.run([sys.executable, script, bench, peers], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("6 of 8 targets met", r.stdout)
        r = subprocess.run([sys.executable, script, bench, peers, "--strict"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 1)
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, script, os.path.join(d, "none.log"), peers],
                               capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)


if __name__ == "__main__":
    unittest.main()
