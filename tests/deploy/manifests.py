"""Renders the kustomize trees under deploy/k8s and indexes the objects.

Every test that inspects manifests goes through here so that what is
checked is exactly what `kubectl apply -k` would send.
"""
import os
import shutil
import subprocess

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(REPO, "deploy", "k8s")
# Every kustomization an operator may apply: the two cluster flavours and
# the optional gateway add-on.
OVERLAYS = {
    "cpu": os.path.join(K8S, "overlays", "cpu"),
    "gpu": os.path.join(K8S, "overlays", "gpu"),
    "gateway": os.path.join(K8S, "gateway"),
}


def kubectl():
    """The kubectl used to render; KUBECTL overrides the one on PATH."""
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        raise RuntimeError("kubectl not found: install kubernetes-client or set KUBECTL")
    return path


def render(directory):
    """Returns the list of objects `kubectl kustomize DIR` produces."""
    proc = subprocess.run([kubectl(), "kustomize", directory], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("kubectl kustomize %s failed:\n%s" % (directory, proc.stderr))
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


class Objects:
    """Rendered objects of one kustomization, looked up by kind and name."""

    def __init__(self, docs):
        self.docs = docs

    def of_kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind, name):
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError("expected one %s/%s, found %d" % (kind, name, len(found)))
        return found[0]

    def get_prefix(self, kind, prefix):
        """A generated object (ConfigMap) whose name carries a hash suffix."""
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"].startswith(prefix)]
        if len(found) != 1:
            raise KeyError("expected one %s named %s*, found %d" % (kind, prefix, len(found)))
        return found[0]


def container(deployment, name):
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise KeyError("no container %s in %s" % (name, deployment["metadata"]["name"]))


def container_port(c, port_name):
    for p in c.get("ports", []):
        if p.get("name") == port_name:
            return p["containerPort"]
    raise KeyError("container %s has no port named %s" % (c["name"], port_name))


def flag_args(args):
    """Parses ["--a", "1", "--b=2"] into {"a": "1", "b": "2"}; order kept."""
    flags = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ValueError("positional argument %r in container args" % a)
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError("flag %s has no value" % a)
            k, v = a[2:], args[i + 1]
            i += 2
        if k in flags:
            raise ValueError("flag --%s given twice" % k)
        flags[k] = v
    return flags
