"""The sandspec driver protocol (v1), for drivers written in Python.

Standard library only: a driver imports this module, implements a backend
(``hello()`` and ``run(request)``) and calls ``serve(backend)``. See
conformance/PROTOCOL.md for the messages.

What this module guarantees, so that each driver does not have to:

* The protocol streams are moved away from fd 0 and fd 1 before the backend
  is loaded. fd 0 becomes /dev/null (or, during a run, a file holding the
  command's stdin) and fd 1 goes to stderr. A backend that lets its child
  inherit the caller's stdio can therefore neither read the harness's
  requests nor write into the result stream.
* The driver runs in /, the protocol's default cwd, for backends whose
  child inherits the caller's working directory.
* Every request gets exactly one answer with its ``seq``: a ``result``, or an
  ``error`` when the backend raised something the driver did not classify;
  a ``ping`` gets a ``pong``.
* Nothing is dropped silently: a policy field the backend cannot express is a
  ``setup_error`` of kind ``invalid_policy`` (raise ``Unsupported``).
"""

import base64
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback

PROTOCOL = 1

# The PATH a sandboxed command gets when the policy lists none (src/policy.rs).
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Cap on each of stdout and stderr when the policy sets none (src/policy.rs).
DEFAULT_OUTPUT_BYTES = 16 << 20

SETUP_ERROR_KINDS = {
    "landlock_unavailable",
    "landlock_disabled",
    "abi_too_low",
    "invalid_policy",
    "path_error",
    "restrict_failed",
    "spawn_failed",
    "other",
}


class SetupFailure(Exception):
    """The backend refused to start the command: reported as ``setup_error``."""

    def __init__(self, kind, message):
        if kind not in SETUP_ERROR_KINDS:
            raise ValueError(f"unknown setup error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message


class Unsupported(SetupFailure):
    """The policy asks for something this backend cannot enforce."""

    def __init__(self, what):
        super().__init__("invalid_policy", f"the backend cannot enforce {what}")


# --------------------------------------------------------------------------
# Values


def parse_duration(value):
    """Seconds from the wire form of a timeout ("1500ms", "2s", 2, 1.5)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    for unit, mult in (("ms", 0.001), ("us", 0.000001), ("min", 60.0), ("s", 1.0), ("m", 60.0)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * mult
    return float(s)


_SIZE_UNITS = {
    "": 1, "B": 1,
    "K": 1 << 10, "k": 1 << 10, "KiB": 1 << 10, "Ki": 1 << 10,
    "M": 1 << 20, "MiB": 1 << 20, "Mi": 1 << 20,
    "G": 1 << 30, "GiB": 1 << 30, "Gi": 1 << 30,
    "kB": 1000, "KB": 1000, "MB": 1000 * 1000, "GB": 1000 * 1000 * 1000,
}


def parse_size(value):
    """Bytes from the wire form of a size (an integer; "64M" is accepted too)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    s = str(value).strip()
    i = 0
    while i < len(s) and (s[i].isdigit() or s[i] == "."):
        i += 1
    unit = s[i:].strip()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}")
    return int(float(s[:i]) * _SIZE_UNITS[unit])


_POLICY_KEYS = {"read", "write", "exec", "network", "scope", "limits", "timeout", "env", "cwd"}
_LIMIT_KEYS = {"memory", "processes", "open_files", "cpu_seconds", "output_bytes"}
_COMMAND_KEYS = {"argv", "script", "stdin_b64"}


def _only(obj, allowed, what):
    """Unknown fields are errors: a policy field this driver does not know
    would otherwise be a rule silently dropped."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must be an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) in {what}: {', '.join(unknown)}")


class Request:
    """One ``run`` message, with the policy's fields at hand."""

    def __init__(self, msg):
        # Unknown top-level fields are ignored (the harness may add optional
        # ones within a version); inside policy and command an unknown field
        # is a rule this driver would not enforce, so it is refused.
        _only(msg.get("policy") or {}, _POLICY_KEYS, "policy")
        _only((msg.get("policy") or {}).get("limits") or {}, _LIMIT_KEYS, "policy.limits")
        _only(msg.get("command") or {}, _COMMAND_KEYS, "command")
        if isinstance((msg.get("command") or {}).get("script"), dict):
            _only(msg["command"]["script"], {"interpreter", "body"}, "command.script")
        if isinstance((msg.get("policy") or {}).get("network"), dict):
            _only(msg["policy"]["network"], {"tcp_connect", "tcp_bind"}, "policy.network")
        self.seq = msg["seq"]
        self.case = msg.get("case", "")
        policy = msg.get("policy") or {}
        command = msg.get("command") or {}
        self.policy = policy
        self.read = list(policy.get("read", []))
        self.write = list(policy.get("write", []))
        self.exec = list(policy.get("exec", []))
        self.network = policy.get("network", "deny")
        self.scope = list(policy.get("scope", []))
        limits = policy.get("limits") or {}
        self.memory = parse_size(limits.get("memory"))
        self.processes = limits.get("processes")
        self.open_files = limits.get("open_files")
        self.cpu_seconds = limits.get("cpu_seconds")
        out = parse_size(limits.get("output_bytes"))
        self.output_bytes_set = out is not None
        self.output_bytes = DEFAULT_OUTPUT_BYTES if out is None else out
        self.timeout = parse_duration(policy.get("timeout"))
        self.env = dict(policy.get("env") or {})
        self.cwd = policy.get("cwd") or "/"
        self.argv = command.get("argv")
        script = command.get("script")
        if script is not None:
            interp = script["interpreter"]
            self.script = {
                "interpreter": [interp] if isinstance(interp, str) else list(interp),
                "body": script["body"],
            }
        else:
            self.script = None
        if (self.argv is None) == (self.script is None):
            raise ValueError("a command has exactly one of `argv` and `script`")
        if self.argv is not None and not self.argv:
            raise ValueError("argv must not be empty")
        self.stdin = base64.b64decode(command.get("stdin_b64", ""), validate=True)

    def child_env(self):
        """The command's whole environment: the policy's variables, and a
        minimal PATH unless the policy lists one."""
        env = dict(self.env)
        env.setdefault("PATH", DEFAULT_PATH)
        return env

    def network_kind(self):
        """"deny", "allow" or "ports"."""
        if self.network in ("deny", "allow"):
            return self.network
        if isinstance(self.network, dict):
            return "ports"
        raise ValueError(f"invalid network {self.network!r}")

    def tcp_connect(self):
        return list(self.network.get("tcp_connect", [])) if isinstance(self.network, dict) else []

    def tcp_bind(self):
        return list(self.network.get("tcp_bind", [])) if isinstance(self.network, dict) else []


# --------------------------------------------------------------------------
# Outcomes and results


def exited(code):
    return {"exited": {"code": int(code)}}


def signaled(signal):
    return {"signaled": {"signal": int(signal)}}


TIMEOUT = "timeout"


def result(outcome, stdout=b"", stderr=b"", cap=DEFAULT_OUTPUT_BYTES,
           truncated=False, filtered_paths=(), duration_s=0.0):
    """The ``result`` body (without type and seq); output cut at ``cap``."""
    stdout = stdout or b""
    stderr = stderr or b""
    if len(stdout) > cap or len(stderr) > cap:
        truncated = True
        stdout, stderr = stdout[:cap], stderr[:cap]
    return {
        "outcome": outcome,
        "stdout_b64": base64.b64encode(stdout).decode("ascii"),
        "stderr_b64": base64.b64encode(stderr).decode("ascii"),
        "output_truncated": bool(truncated),
        "filtered_paths": [str(p) for p in filtered_paths],
        "duration_us": max(0, int(duration_s * 1_000_000)),
    }


def setup_error(kind, message, duration_s=0.0):
    return result({"setup_error": {"kind": kind, "message": message}}, duration_s=duration_s)


# --------------------------------------------------------------------------
# Helpers for backends


@contextlib.contextmanager
def stdin_as_fd0(data):
    """During the block, fd 0 reads ``data`` then EOF (a backend whose child
    inherits the caller's stdin gives it exactly this); /dev/null after."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        os.dup2(f.fileno(), 0)
        try:
            yield
        finally:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)


@contextlib.contextmanager
def script_dir(body, name="script"):
    """A fresh directory (mode 0755) holding the script body as ``name``
    (mode 0644); yields (directory, file path). Removed afterwards."""
    d = tempfile.mkdtemp(prefix="sandspec-script-")
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(body)
        os.chmod(path, 0o644)
        yield d, path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(d, name))
        with contextlib.suppress(OSError):
            os.rmdir(d)


def missing_paths(req):
    """Allowlisted paths that do not exist (for diagnostics only)."""
    return [p for p in req.read + req.write + req.exec if not os.path.lexists(p)]


def log(*args):
    """A diagnostic line on stderr (the harness keeps the driver's stderr)."""
    print(f"[{DRIVER_NAME}]", *args, file=sys.stderr, flush=True)


DRIVER_NAME = "driver"


# --------------------------------------------------------------------------
# The loop


def _protect_stdio():
    """Moves the protocol off fd 0/1; returns (reader, writer)."""
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    for f in (proto_in, proto_out):
        os.set_inheritable(f.fileno(), False)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr
    # A backend whose child inherits the caller's working directory gets the
    # protocol's default cwd, whatever directory the harness started us in.
    os.chdir("/")
    return proto_in, proto_out


def serve(make_backend, name):
    """Speaks protocol v1 on the original stdin/stdout until ``bye`` or EOF.

    ``make_backend()`` is called after the stdio is protected (so an import
    that prints cannot corrupt the stream) and returns an object with
    ``hello() -> {"name","version","capabilities"[,"requires_landlock_abi"]}`` and
    ``run(Request) -> result dict``.
    """
    global DRIVER_NAME
    DRIVER_NAME = name
    proto_in, proto_out = _protect_stdio()

    def send(msg):
        proto_out.write((json.dumps(msg, separators=(",", ":")) + "\n").encode("utf-8"))

    backend = None
    backend_error = None
    try:
        backend = make_backend()
    except SetupFailure as e:
        backend_error = e
    except Exception as e:  # noqa: BLE001 - reported to the harness, then we stop
        backend_error = SetupFailure("other", f"failed to load the backend: {type(e).__name__}: {e}")
        log(traceback.format_exc())

    while True:
        line = proto_in.readline()
        if not line:
            return 0
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a message is a JSON object")
        except ValueError as e:
            send({"type": "error", "seq": 0, "message": f"failed to parse request: {e}"})
            continue
        kind = msg.get("type")
        if kind == "hello":
            if msg.get("protocol") != PROTOCOL:
                send({
                    "type": "error",
                    "seq": 0,
                    "message": f"unsupported protocol version {msg.get('protocol')!r}: this driver speaks {PROTOCOL}",
                })
                return 2
            if backend is None:
                send({"type": "error", "seq": 0, "message": str(backend_error)})
                return 2
            hello = backend.hello()
            answer = {
                "type": "hello",
                "protocol": PROTOCOL,
                "driver": {"name": hello["name"], "version": hello["version"]},
                "capabilities": sorted(hello["capabilities"]),
            }
            if hello.get("requires_landlock_abi") is not None:
                answer["requires_landlock_abi"] = hello["requires_landlock_abi"]
            send(answer)
        elif kind == "run":
            seq = msg.get("seq")
            if not isinstance(seq, int):
                send({"type": "error", "seq": 0, "message": "run without an integer seq"})
                continue
            try:
                req = Request(msg)
            except (KeyError, TypeError, ValueError) as e:
                send({"type": "error", "seq": seq, "message": f"failed to read run request: {e}"})
                continue
            started = time.monotonic()
            try:
                body = backend.run(req)
            except SetupFailure as e:
                body = setup_error(e.kind, e.message, time.monotonic() - started)
            except Exception as e:  # noqa: BLE001 - a driver fault, reported as such
                log(traceback.format_exc())
                send({"type": "error", "seq": seq, "message": f"failed to run: {type(e).__name__}: {e}"})
                continue
            send({"type": "result", "seq": seq, **body})
        elif kind == "ping":
            # Optional (sent by `sandspec bench` only): answered at once, so
            # the bench can subtract this loop's round trip from each run.
            seq = msg.get("seq")
            if isinstance(seq, int):
                send({"type": "pong", "seq": seq})
            else:
                send({"type": "error", "seq": 0, "message": "ping without an integer seq"})
        elif kind == "bye":
            return 0
        else:
            send({"type": "error", "seq": msg.get("seq") if isinstance(msg.get("seq"), int) else 0, "message": f"unknown message type {kind!r}"})
