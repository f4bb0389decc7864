"""Container images (deploy/docker): static checks of the Dockerfile against
the binaries and configs, the runtime-package helper on the real binaries,
and, with --build-images and a usable container engine, real builds."""
import os
import re
import shutil
import subprocess
import unittest

import yaml

import binaries
import deploy_env

DOCKER_DIR = os.path.join(deploy_env.REPO, "deploy", "docker")
DOCKERFILE = os.path.join(DOCKER_DIR, "Dockerfile")
RUNTIME_STAGES = {
    # stage: (binary, config)
    "front": ("sparsevid-front", "front.yaml"),
    "worker-cpu": ("sparsevid-worker", "worker.yaml"),
    "worker-cuda": ("sparsevid-worker", "worker.yaml"),
}
# Lines for the ports of each image: (config key, what the port is).
IMAGE_PORTS = {
    "sparsevid-front": ("server.listen", "metrics.listen"),
    "sparsevid-worker": ("health.address", "metrics.address"),
}


def stages(text):
    """{stage name: [instruction lines]} with continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out, current = {}, None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if current:
            out[current].append(line)
    return out


def image_config_ports(binary, config_name):
    """Ports the binary binds with the config baked into its image."""
    flags = binaries.help_flags(binary)
    with open(os.path.join(deploy_env.REPO, "configs", config_name)) as f:
        tree = yaml.safe_load(f) or {}
    eff = binaries.effective_config(flags, tree, {})
    return [binaries.port_of(eff[k]) for k in IMAGE_PORTS[os.path.basename(binary)]]


class DockerfileTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        deploy_env.require("FRONT", "WORKER")
        with open(DOCKERFILE) as f:
            cls.text = f.read()
        cls.stages = stages(cls.text)
        cls.bins = {"sparsevid-front": deploy_env.FRONT, "sparsevid-worker": deploy_env.WORKER}

    def test_build_stage_uses_the_project_scripts_on_debian_12(self):
        self.assertRegex(self.text, r"ARG DEBIAN_IMAGE=debian:12\b")
        build = " ".join(self.stages["build"])
        self.assertIn("scripts/setup.sh", build)
        self.assertIn("scripts/build.sh", build)

    def test_runtime_stages_run_unprivileged_with_healthcheck(self):
        uid = re.search(r"^ARG APP_UID=(\d+)$", self.text, re.M).group(1)
        self.assertNotEqual(uid, "0")
        for stage, (binary, config) in RUNTIME_STAGES.items():
            lines = self.stages[stage]
            users = [l for l in lines if l.startswith("USER ")]
            self.assertEqual(users, ["USER ${APP_UID}:${APP_UID}"], stage)
            self.assertTrue(any(l.startswith("HEALTHCHECK ") for l in lines), stage)
            entry = [l for l in lines if l.startswith("ENTRYPOINT ")]
            self.assertEqual(len(entry), 1, stage)
            self.assertIn('"/usr/local/bin/%s"' % binary, entry[0])
            self.assertIn('"/etc/sparsevid/%s"' % config, entry[0])
            self.assertTrue(any(l == "COPY configs/%s /etc/sparsevid/%s" % (config, config)
                                for l in lines), stage)

    def test_exposed_and_checked_ports_are_the_bound_ports(self):
        for stage, (binary, config) in RUNTIME_STAGES.items():
            lines = self.stages[stage]
            ports = image_config_ports(self.bins[binary], config)
            expose = [l for l in lines if l.startswith("EXPOSE ")]
            self.assertEqual(len(expose), 1, stage)
            self.assertEqual(sorted(int(p) for p in expose[0].split()[1:]), sorted(ports), stage)
            health = [l for l in lines if l.startswith("HEALTHCHECK ")][0]
            if binary == "sparsevid-front":
                # gRPC health on the gRPC port, through the CLI in the image.
                self.assertIn('"/usr/local/bin/sparsevid", "-a", "127.0.0.1:%d", "health"'
                              % ports[0], health)
                self.assertIn("/out/bin/sparsevid ", " ".join(lines))
            else:
                self.assertIn('"127.0.0.1", "%d", "/metrics"' % ports[1], health, stage)

    def test_cuda_stage_builds_with_cuda_and_sets_the_toolkit_variables(self):
        self.assertIn("-DSPARSEVID_CUDA=ON", " ".join(self.stages["build-cuda"]))
        self.assertIn("-DSPARSEVID_CUDA=OFF", " ".join(self.stages["build"]))
        cuda = " ".join(self.stages["worker-cuda"])
        self.assertIn("NVIDIA_VISIBLE_DEVICES=all", cuda)
        self.assertIn("COPY --from=build-cuda /out/bin/sparsevid-worker", cuda)

    def test_worker_images_carry_the_default_model_path(self):
        files = " ".join(self.stages["worker-files"])
        self.assertIn("COPY models/sparsevid-shapes /models/sparsevid-shapes", files)

    def test_copied_repository_paths_exist(self):
        for stage, lines in self.stages.items():
            for l in lines:
                m = re.match(r"COPY\s+(?!--from)(\S+)\s+\S+$", l)
                if not m or m.group(1).startswith("models/"):
                    continue  # the model directory is checked when building
                self.assertTrue(os.path.exists(os.path.join(deploy_env.REPO, m.group(1))),
                                "%s: COPY source %s missing" % (stage, m.group(1)))

    def test_runtime_packages_cover_the_real_binaries(self):
        script = os.path.join(DOCKER_DIR, "runtime-packages.sh")
        proc = subprocess.run([script, deploy_env.FRONT, deploy_env.WORKER], capture_output=True,
                              text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        pkgs = proc.stdout.split()
        self.assertTrue(any(p.startswith("libgrpc++") for p in pkgs), pkgs)
        self.assertTrue(any(p.startswith("libavcodec") for p in pkgs), pkgs)
        self.assertTrue(any(p.startswith("libprotobuf") for p in pkgs), pkgs)
        self.assertFalse([p for p in pkgs if p.endswith("-dev")], pkgs)
        bad = subprocess.run([script, os.path.join(DOCKER_DIR, "Dockerfile")],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("not an executable file", bad.stderr)


class ImageBuildTest(unittest.TestCase):
    """Real `docker build` of the CPU images (the CUDA one needs NVIDIA's
    apt repository and is left to the release pipeline)."""

    def test_build_cpu_images(self):
        docker = shutil.which("docker")
        if not docker:
            self.skipTest("no docker client: image build not exercised")
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
        if info.returncode != 0:
            self.skipTest("docker has no usable engine here: image build not exercised")
        if not os.path.exists(os.path.join(deploy_env.REPO, "models", "sparsevid-shapes",
                                           "model.yaml")):
            self.skipTest("models/sparsevid-shapes is not in the repository yet: "
                          "the worker image cannot bake it in")
        for target in ("front", "worker-cpu"):
            proc = subprocess.run([docker, "build", "-f", DOCKERFILE, "--target", target,
                                   "-t", "sparsevid-%s:test" % target, deploy_env.REPO],
                                  capture_output=True, text=True, timeout=3600)
            self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-4000:])


if __name__ == "__main__":
    unittest.main()
