"""What the deploy tests were given on the command line (binaries from the
build tree) and where the repository is. Filled in by run_deploy_tests.py."""
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FRONT = None
WORKER = None
CLI = None
MAKE_TINY_MODEL = None
WORK_DIR = None
# Whether the worker was built with the CUDA backend (True/False; None when
# not passed).
CUDA_BACKEND = None


def require(*names):
    """Fails the calling test unless the named binaries were passed in."""
    missing = [n for n in names if globals().get(n) in (None, "")]
    if missing:
        raise AssertionError("not passed to the test: %s" % ", ".join(missing))
