#!/usr/bin/env python3
"""Entry point of the deploy tests (registered in ctest by CMakeLists.txt).

  run_deploy_tests.py SUITE [--front BIN --worker BIN --cli BIN
                             --make-tiny-model BIN --work-dir DIR
                             --cuda-backend 0|1]

Exit code 77 (ctest SKIP_RETURN_CODE) when every test of the suite was
skipped, e.g. the image build without a container engine.
"""
import argparse
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import deploy_env  # noqa: E402

SUITES = {
    "promql": ["test_promql_names"],
    "lint": ["test_lint"],
    "rules": ["test_rules"],
    "manifests": ["test_manifests"],
    "live": ["test_live_metrics"],
    "images": ["test_images.DockerfileTest"],
    "image-build": ["test_images.ImageBuildTest"],
    "gpu-worker": ["test_gpu_worker"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("--front")
    ap.add_argument("--worker")
    ap.add_argument("--cli")
    ap.add_argument("--make-tiny-model")
    ap.add_argument("--work-dir", default=tempfile.gettempdir())
    ap.add_argument("--cuda-backend", choices=("0", "1"),
                    help="1 if the worker was built with the CUDA backend")
    args = ap.parse_args()
    deploy_env.FRONT = args.front
    deploy_env.WORKER = args.worker
    deploy_env.CLI = args.cli
    deploy_env.MAKE_TINY_MODEL = args.make_tiny_model
    if args.cuda_backend is not None:
        deploy_env.CUDA_BACKEND = args.cuda_backend == "1"
    os.makedirs(args.work_dir, exist_ok=True)
    deploy_env.WORK_DIR = args.work_dir
    suite = unittest.defaultTestLoader.loadTestsFromNames(SUITES[args.suite])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    for test, reason in result.skipped:
        print("SKIPPED %s: %s" % (test.id(), reason))
    if not result.wasSuccessful():
        return 1
    if result.testsRun and len(result.skipped) == result.testsRun:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
