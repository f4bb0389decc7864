"""Runs the real sparsevid binaries for the deploy tests: reads their
--help (flag names and defaults), starts them and scrapes /metrics."""
import json
import os
import re
import select
import signal
import subprocess
import threading
import time
import urllib.request

# CLI11 prints one option per line: "  --queue.capacity TEXT=256  help..."
# (the help text may wrap onto the next line).
_HELP_LINE = re.compile(r"^\s+(?:-\w,)?--([a-z0-9_.\-]+)(?:\s+[A-Z:]+(?:=(\S*))?)?(?:\s|$)")


def help_flags(binary):
    """{flag: default or None} from `binary --help`."""
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError("%s --help exited %d: %s" % (binary, proc.returncode, proc.stderr))
    flags = {}
    for line in proc.stdout.splitlines():
        m = _HELP_LINE.match(line)
        if m:
            flags[m.group(1)] = m.group(2)
    if not flags:
        raise RuntimeError("no flags found in %s --help:\n%s" % (binary, proc.stdout))
    return flags


def help_description(binary, flag):
    """The help text `binary --help` prints for --flag (first line)."""
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    for line in proc.stdout.splitlines():
        m = _HELP_LINE.match(line)
        if m and m.group(1) == flag:
            return line[m.end():].strip()
    raise KeyError("--%s not in %s --help" % (flag, binary))


def flatten_yaml(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}, the dotted keys the binaries accept."""
    out = {}
    for k, v in (tree or {}).items():
        key = "%s.%s" % (prefix, k) if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten_yaml(v, key))
        else:
            out[key] = v
    return out


def effective_config(defaults, config_tree, flags):
    """What a binary runs with: --help defaults < config file < flags."""
    eff = {k: v for k, v in defaults.items()}
    for k, v in flatten_yaml(config_tree).items():
        eff[k] = v if not isinstance(v, bool) else ("true" if v else "false")
    eff.update(flags)
    return {k: (None if v is None else str(v)) for k, v in eff.items()}


def port_of(address):
    """Port number of "host:port" / "[v6]:port"."""
    if address is None or ":" not in address:
        raise ValueError("not a host:port address: %r" % address)
    return int(address.rsplit(":", 1)[1])


class Process:
    """A started binary that printed its one-line JSON "ready" message."""

    def __init__(self, argv, name, log_dir, timeout=60):
        self.name = name
        self.log_path = os.path.join(log_dir, name + ".log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.ready = self._wait_ready(timeout)
        # Keep draining stdout so a chatty process never blocks on the pipe.
        self._pump = threading.Thread(target=self._copy_stdout, daemon=True)
        self._pump.start()

    def _copy_stdout(self):
        for line in self.proc.stdout:
            self._log.write(line)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        buf = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d before ready; log %s:\n%s" % (
                    self.name, self.proc.returncode, self.log_path, self.log_tail()))
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not r:
                continue
            line = self.proc.stdout.readline()
            buf += line
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("msg") == "ready":
                return msg
        raise RuntimeError("%s not ready within %ss; stdout:\n%s\nlog:\n%s" % (
            self.name, timeout, buf, self.log_tail()))

    def log_tail(self, n=4000):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()[-n:]

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code (kills after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def scrape(port, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=timeout) as r:
        return r.read().decode()


def parse_exposition(text):
    """{family: {"type": t, "labels": set(label names of its samples)}} from
    Prometheus text format, with _bucket/_sum/_count mapped to the family."""
    families = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            families.setdefault(name, {"type": typ, "labels": set(), "samples": 0})
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s", line)
        if not m:
            continue
        sample = m.group(1)
        family = sample
        for suffix in ("_bucket", "_sum", "_count"):
            if sample.endswith(suffix) and sample[:-len(suffix)] in families:
                family = sample[:-len(suffix)]
        entry = families.setdefault(family, {"type": "untyped", "labels": set(), "samples": 0})
        entry["samples"] += 1
        if m.group(3):
            entry["labels"].update(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3)))
    return families


def series_names(families):
    """Every name a PromQL selector may use for these families."""
    names = {}
    for fam, info in families.items():
        names[fam] = fam
        if info["type"] in ("histogram", "summary"):
            for suffix in ("_bucket", "_sum", "_count"):
                if info["type"] == "summary" and suffix == "_bucket":
                    continue
                names[fam + suffix] = fam
    return names
