"""sandspec driver for sandlock's Python SDK (sandlock==0.9.0).

How the policy maps (sandlock.Sandbox fields):
  read, exec      -> fs_readable (sandlock has no separate execute right:
                     whatever is readable is executable, so fs.exec is not
                     claimed)
  write           -> fs_writable (write implies read in sandlock, as here)
  network deny    -> net_allow=[] and net_allow_bind=[] (deny all)
  network allow   -> net_allow=["*:*"] (TCP and UDP anywhere),
                     net_allow_bind=["*"]
  tcp_connect     -> net_allow=["tcp://*:PORT", ...] (UDP stays denied)
  tcp_bind        -> net_allow_bind=[PORT, ...]
  scope           -> sandlock scopes signals and abstract unix sockets
                     always; a scope the policy does not ask for is switched
                     off with disable=[Protection...]
  limits.memory   -> max_memory (bytes)
  limits.processes-> max_processes
  limits.open_files -> max_open_files
  limits.cpu_seconds -> not expressible (max_cpu is a throttle): refused
                     as invalid_policy
  limits.output_bytes -> not a sandlock feature: the SDK buffers all output
                     in memory; the driver only cuts what it sends back, so
                     the capability is not claimed
  timeout         -> run(timeout=...): reason TIMEOUT becomes "timeout"
  env             -> clean_env=True, env={...} (+ PATH default)
  cwd             -> cwd (default "/")
  stdin           -> sandlock's run() lets the child inherit fd 0; the
                     driver points fd 0 at a file holding the bytes
  script          -> body written to a file in a fresh 0755 directory that
                     is added to fs_readable; the interpreter runs the file
                     (never the body in argv)
Nothing is filtered: a missing allowlisted path reaches sandlock as is.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_common"))
import sandspec_driver as sd  # noqa: E402

CAPABILITIES = [
    "fs.read",
    "fs.write",
    "net.deny",
    "net.allow",
    "net.tcp_connect",
    "net.tcp_bind",
    "scope.signal",
    "scope.abstract_unix_socket",
    "limits.memory",
    "limits.processes",
    "limits.open_files",
    "timeout",
    "script",
    "stdin",
    "env",
    "cwd",
]


def min_landlock_abi(sl):
    """The lowest Landlock ABI sandlock runs on (it refuses below it), for
    the hello's requires_landlock_abi; None if sandlock cannot say."""
    try:
        need = int(sl.min_landlock_abi())
    except Exception:  # noqa: BLE001 - then the hello leaves it out
        return None
    return need if need >= 1 else None


def landlock_state(sl):
    """(setup error kind, explanation) from sandlock's own Landlock probe,
    for a run sandlock could not create. sandlock reports -1 both when
    Landlock is not built in and when it is disabled at boot, so that case
    is `landlock_unavailable` either way."""
    try:
        abi, need = sl.landlock_abi_version(), sl.min_landlock_abi()
    except Exception as e:  # noqa: BLE001 - diagnostics only
        return "other", f"sandlock's Landlock probe failed: {e}"
    if abi < 0:
        return "landlock_unavailable", (
            f"sandlock finds no usable Landlock (ABI {abi}; it does not say whether "
            "it is missing or disabled)"
        )
    if abi < need:
        return "abi_too_low", f"Landlock ABI {abi}, sandlock needs {need}"
    return "other", f"Landlock ABI {abi} (sandlock needs {need}), so not the cause"


class SandlockBackend:
    def __init__(self):
        import sandlock

        self.sandlock = sandlock

    def hello(self):
        return {"name": "sandlock", "version": self.sandlock.__version__, "capabilities": CAPABILITIES,
                "requires_landlock_abi": min_landlock_abi(self.sandlock)}

    def _sandbox_kwargs(self, req, extra_readable):
        sl = self.sandlock
        if req.cpu_seconds is not None:
            raise sd.Unsupported("limits.cpu_seconds (sandlock's max_cpu is a CPU-share throttle, not a CPU-time limit)")
        kw = {
            "fs_readable": [str(p) for p in req.read + req.exec] + extra_readable,
            "fs_writable": [str(p) for p in req.write],
            "clean_env": True,
            "env": req.child_env(),
            "cwd": req.cwd,
        }
        kind = req.network_kind()
        if kind == "allow":
            kw["net_allow"] = ["*:*"]
            kw["net_allow_bind"] = ["*"]
        elif kind == "ports":
            kw["net_allow"] = [f"tcp://*:{int(p)}" for p in req.tcp_connect()]
            kw["net_allow_bind"] = [int(p) for p in req.tcp_bind()]
        disable = []
        if "signal" not in req.scope:
            disable.append(sl.Protection.SIGNAL_SCOPE)
        if "abstract_unix_socket" not in req.scope:
            disable.append(sl.Protection.ABSTRACT_UNIX_SOCKET_SCOPE)
        if disable:
            kw["disable"] = disable
        if req.memory is not None:
            kw["max_memory"] = int(req.memory)
        if req.processes is not None:
            kw["max_processes"] = int(req.processes)
        if req.open_files is not None:
            kw["max_open_files"] = int(req.open_files)
        return kw

    def run(self, req):
        if req.script is not None:
            with sd.script_dir(req.script["body"]) as (d, path):
                return self._run(req, req.script["interpreter"] + [path], [d])
        return self._run(req, list(req.argv), [])

    def _run(self, req, argv, extra_readable):
        sl = self.sandlock
        kw = self._sandbox_kwargs(req, extra_readable)
        started = time.monotonic()
        try:
            sb = sl.Sandbox(**kw)
            with sd.stdin_as_fd0(req.stdin):
                r = sb.run(argv, timeout=req.timeout)
        except (sl.PolicyError, ValueError, TypeError) as e:
            raise sd.SetupFailure("invalid_policy", f"sandlock rejected the policy: {e}")
        except sl.LandlockUnavailableError as e:
            raise sd.SetupFailure("landlock_unavailable", f"sandlock: {e}")
        except sl.SandlockError as e:
            raise sd.SetupFailure("other", f"sandlock: {type(e).__name__}: {e}")
        duration = time.monotonic() - started

        if r.reason is None:
            # No native result: sandlock failed before the command ran
            # (sandlock_create / sandlock_start / wait failed).
            detail = [f"sandlock: {r.error or 'run failed without a result'}"]
            missing = sd.missing_paths(req)
            if missing:
                detail.append(f"allowlisted paths that do not exist: {', '.join(missing)}")
            kind, why = landlock_state(sl)
            detail.append(why)
            return sd.setup_error(kind, "; ".join(detail), duration)

        R = sl.ExitReason
        if r.reason == R.TIMEOUT:
            outcome = sd.TIMEOUT
        elif r.reason == R.SIGNALED:
            outcome = sd.signaled(r.signal)
        elif r.reason == R.KILLED:
            # sandlock's ExitReason: a kill without a recoverable signal
            # number; its docs tie that to SIGKILL (OOM or kill -9).
            outcome = sd.signaled(9)
        else:
            outcome = sd.exited(r.exit_code)
        return sd.result(outcome, r.stdout, r.stderr, cap=req.output_bytes, duration_s=duration)


if __name__ == "__main__":
    sys.exit(sd.serve(SandlockBackend, "sandlock"))
