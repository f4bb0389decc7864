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


def cublas_libraries(binary):
    """Paths of the cuBLAS libraries `binary` loads (none without CUDA)."""
    proc = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60)
    return re.findall(r"^\s*libcublas\S*\s+=>\s+(/\S+)", proc.stdout, re.M)


def dpkg_owns(path):
    real = os.path.realpath(path)
    for candidate in (path, real):
        if subprocess.run(["dpkg-query", "-S", candidate], capture_output=True,
                          timeout=60).returncode == 0:
            return True
    return False


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
        build = " ".join(self.stages["build-cuda"])
        self.assertIn("-DSPARSEVID_CUDA=ON", build)
        self.assertIn("-DSPARSEVID_CUDA=OFF", " ".join(self.stages["build"]))
        cuda = " ".join(self.stages["worker-cuda"])
        self.assertIn("NVIDIA_VISIBLE_DEVICES=all", cuda)
        self.assertIn("COPY --from=build-cuda /out/bin/sparsevid-worker", cuda)

    def test_cuda_build_targets_hopper_with_a_pinned_toolkit(self):
        # The Hopper kernels (wgmma, TMA, setmaxnreg) exist only as sm_90a
        # code; the architecture and the compiler are passed explicitly so
        # that neither CMake's default nor the environment decides them.
        self.assertRegex(self.text, r"(?m)^ARG CUDA_ARCHITECTURES=90a$")
        self.assertRegex(self.text, r"(?m)^ARG CUDA_VERSION=\d+\.\d+$")
        build = " ".join(self.stages["build-cuda"])
        self.assertIn("-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}", build)
        self.assertIn("ENV CUDA_HOME=/usr/local/cuda-${CUDA_VERSION}", build)
        self.assertIn("-DCMAKE_CUDA_COMPILER=${CUDA_HOME}/bin/nvcc", build)
        # nvcc + CCCL, the runtime and driver API headers, cuBLAS: what
        # kernels/cuda includes and links.
        for pkg in ("cuda-minimal-build", "cuda-cudart-dev", "cuda-driver-dev", "libcublas-dev"):
            self.assertIn(pkg + "-${pkg}", build)

    def test_cuda_stages_can_reach_nvidias_repository(self):
        # cuda-keyring adds an https source: without CA certificates (not
        # in debian:12 images) apt cannot fetch from it.
        for stage in ("build-cuda", "worker-cuda"):
            run = [l for l in self.stages[stage] if "cuda-keyring" in l and l.startswith("RUN ")]
            self.assertEqual(len(run), 1, stage)
            self.assertLess(run[0].index("ca-certificates"), run[0].index("dpkg -i"), stage)

    def test_cuda_worker_is_checked_in_the_build(self):
        # The build stage proves the worker has the CUDA backend; the
        # runtime stage that every library it links resolves.
        build = [l for l in self.stages["build-cuda"] if "scripts/build.sh" in l]
        self.assertEqual(len(build), 1)
        self.assertIn("deploy/docker/check-cuda-worker.sh /out/bin/sparsevid-worker "
                      "/src/models/sparsevid-shapes", build[0])
        self.assertLess(build[0].index("collect-binaries.sh"),
                        build[0].index("check-cuda-worker.sh"))
        runtime = " ".join(self.stages["worker-cuda"])
        self.assertIn('ldd /usr/local/bin/sparsevid-worker | grep "not found"', runtime)

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
            # Scripts that RUN lines call from the source tree, too.
            for l in lines:
                if not l.startswith("RUN "):
                    continue
                for script in re.findall(r"(?<![/\w])((?:deploy|scripts)/\S+\.sh)\b", l):
                    path = os.path.join(deploy_env.REPO, script)
                    self.assertTrue(os.access(path, os.X_OK),
                                    "%s: %s is missing or not executable" % (stage, script))

    def test_runtime_packages_cover_the_real_binaries(self):
        script = os.path.join(DOCKER_DIR, "runtime-packages.sh")
        cublas = cublas_libraries(deploy_env.WORKER)
        # A CUDA worker links cuBLAS; from NVIDIA's packages (the image build)
        # it maps to one, from NVIDIA's tarball (a dev machine) it may not.
        unpackaged = sorted({os.path.dirname(os.path.realpath(p)) for p in cublas
                             if not dpkg_owns(p)})
        allow = [a for d in unpackaged for a in ("--allow-unpackaged", d)]
        proc = subprocess.run([script] + allow + [deploy_env.FRONT, deploy_env.WORKER],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        pkgs = proc.stdout.split()
        skipped = re.findall(r"unpackaged: (\S+)", proc.stderr)
        self.assertTrue(all(os.path.basename(p).startswith("libcublas") for p in skipped),
                        proc.stderr)
        if cublas and not unpackaged:
            self.assertTrue(any(p.startswith("libcublas") for p in pkgs), pkgs)
        if unpackaged:
            self.assertTrue(skipped, proc.stderr)
            # Without the allowance the gap is reported, naming the library.
            strict = subprocess.run([script, deploy_env.WORKER], capture_output=True, text=True,
                                    timeout=300)
            self.assertNotEqual(strict.returncode, 0)
            self.assertRegex(strict.stderr, r"no Debian package provides \S*libcublas")
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
