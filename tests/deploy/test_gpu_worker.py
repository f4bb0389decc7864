"""The GPU overlay's worker on a machine without a GPU.

The real sparsevid-worker is started with the engine flags of the rendered
GPU overlay (deploy/k8s/overlays/gpu) and a tiny model. It must stop at
once with exit status 3 and a log line naming the problem: no usable CUDA
device (a build with the CUDA backend) or no CUDA support in the build
(one without). Never a crash, a hang or a "ready" line.
"""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

import deploy_env
import manifests

# A device probe that fails returns within seconds; past this the worker hangs.
START_LIMIT_SECONDS = 30
CHECK_SCRIPT = os.path.join(deploy_env.REPO, "deploy", "docker", "check-cuda-worker.sh")


def gpu_visible():
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def closed_loopback_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            out.append(msg)
    return out


def links_cublas(binary):
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60)
    return re.search(r"^\s*libcublas\.so", proc.stdout, re.M) is not None


class GpuWorkerWithoutGpuTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        deploy_env.require("WORKER", "MAKE_TINY_MODEL", "CUDA_BACKEND")
        if gpu_visible():
            raise unittest.SkipTest("a GPU is visible here; this covers machines without one")
        cls.tmp = tempfile.mkdtemp(prefix="deploy-gpu-worker-", dir=deploy_env.WORK_DIR)
        try:
            cls.model = os.path.join(cls.tmp, "model")
            subprocess.run([deploy_env.MAKE_TINY_MODEL, cls.model], check=True,
                           capture_output=True, timeout=120)
            objs = manifests.Objects(manifests.render(manifests.OVERLAYS["gpu"]))
            d = objs.get("Deployment", "sparsevid-worker")
            cls.container = manifests.container(d, "worker")
            cm = objs.get_prefix("ConfigMap", "sparsevid-worker-config")
            config = os.path.join(cls.tmp, "worker.yaml")
            with open(config, "w") as f:
                f.write(cm["data"]["worker.yaml"])
            cls.flags = manifests.flag_args(cls.container["args"])
            # The overlay's engine flags as they are; paths and listeners
            # made local. The front is never dialled before the engine loads.
            flags = dict(cls.flags)
            flags.update({"config": config, "model.dir": cls.model,
                          "health.address": "127.0.0.1:0", "metrics.address": "127.0.0.1:0",
                          "front.address": "127.0.0.1:%d" % closed_loopback_port()})
            argv = [deploy_env.WORKER]
            for k, v in flags.items():
                argv += ["--" + k, v]
            cls.argv = argv
            try:
                cls.proc = subprocess.run(argv, capture_output=True, text=True,
                                          timeout=START_LIMIT_SECONDS)
            except subprocess.TimeoutExpired as e:
                raise AssertionError("the worker with the GPU overlay's flags did not stop "
                                     "within %d s without a GPU (hang); output:\n%s\n%s" % (
                                         START_LIMIT_SECONDS, e.stdout, e.stderr))
            cls.log = json_lines(cls.proc.stdout) + json_lines(cls.proc.stderr)
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def output(self):
        return "argv: %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(self.argv), self.proc.stdout,
                                                       self.proc.stderr)

    def load_error(self):
        errors = [m for m in self.log if m.get("level") == "error"]
        self.assertEqual(len(errors), 1, self.output())
        self.assertEqual(errors[0].get("msg"), "cannot load the model", self.output())
        return errors[0]

    def test_overlay_asks_for_a_gpu_device(self):
        self.assertRegex(self.flags["engine.device"], r"^cuda(:\d+)?$")

    def test_exits_with_status_3_and_never_gets_ready(self):
        # 3 = engine load failed (worker/main.cc); a signal would be negative.
        self.assertEqual(self.proc.returncode, 3, self.output())
        self.assertFalse([m for m in self.log if m.get("msg") == "ready"], self.output())

    def test_error_names_the_missing_gpu(self):
        err = self.load_error()
        device = self.flags["engine.device"]
        self.assertEqual(err.get("device"), device)
        # Whatever the build, the overlay's device value is one the engine
        # knows; only its availability may fail here.
        self.assertNotIn("not recognised", err["error"], self.output())
        if deploy_env.CUDA_BACKEND:
            index = device.split(":")[1] if ":" in device else "0"
            self.assertEqual(err.get("code"), "FAILED_PRECONDITION", self.output())
            self.assertIn("no usable CUDA device for cuda:%s" % index, err["error"])
        else:
            self.assertEqual(err.get("code"), "INVALID_ARGUMENT", self.output())
            self.assertIn("this build has no CUDA support", err["error"])

    def test_build_flag_matches_the_binary(self):
        # Only the CUDA backend links cuBLAS: the flag ctest passes in must
        # describe the binary under test.
        self.assertEqual(links_cublas(deploy_env.WORKER), deploy_env.CUDA_BACKEND)

    def test_image_build_check_agrees(self):
        # The check the worker-cuda image build runs on its binary.
        proc = subprocess.run([CHECK_SCRIPT, deploy_env.WORKER, self.model],
                              capture_output=True, text=True, timeout=150)
        if deploy_env.CUDA_BACKEND:
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            self.assertIn("CUDA backend present", proc.stdout)
        else:
            self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
            self.assertIn("built without the CUDA backend", proc.stderr)


if __name__ == "__main__":
    unittest.main()
