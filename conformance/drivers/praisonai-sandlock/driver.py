"""sandspec driver for praisonai-sandbox's SandlockSandbox (0.1.16).

It goes through the wrapper's public API only, the way an agent framework
would: ``run_command(argv, limits, env)`` for commands, ``execute(code,
language)`` for scripts (or ``execute_file(path)`` with
``--scripts execute_file``). What the wrapper does with it was read from
praisonai_sandbox/sandlock.py:

  read, exec  The wrapper always grants its own fixed read list
              (/usr/lib/python3, /usr/local/lib/python3, /lib, /usr/lib,
              /bin, /usr/bin) and has no read-only knob. Other paths can only
              be granted through SecurityPolicy.allowed_paths, which it makes
              WRITABLE. This driver passes non-system paths that way (a
              caller has no other choice) and never widens a system
              directory (/, /usr, /etc, ...) to writable: those get only
              what the fixed list gives.
  write       SecurityPolicy.allowed_paths (writable; the wrapper also makes
              its own temp dir writable and readable, always).
  network     ResourceLimits.network_enabled: allow -> "*:*" plus UDP :53,
              deny -> nothing. Port lists cannot be expressed (refused).
  limits      memory -> memory_mb (rounded down to MiB, at least 1),
              processes -> max_processes, open_files -> max_open_files.
              The wrapper always sets all three; when the policy sets none
              the driver passes values that do not bind (1 TiB, 4096, the
              current RLIMIT_NOFILE), because the documented "memory_mb=0 =
              unlimited" makes sandlock kill every command at once (observed
              here; the wrapper then reports TIMEOUT).
              cpu_seconds cannot be expressed (cpu_percent is a throttle).
  timeout     ResourceLimits.timeout_seconds; the wrapper reports TIMEOUT
              whenever sandlock's exit code is -1, which sandlock also uses
              for signals and kills.
  env         env= (on top of sandlock's clean_env baseline).
  cwd         not expressible: the wrapper's working_dir only widens the
              writable allowlist; the command runs in the driver's cwd, /.
  stdin       not expressible (refused when non-empty).
  scope       sandlock scopes signals and abstract unix sockets always; the
              wrapper cannot turn that off.

The driver claims fs.write but not fs.read: a path the policy lists as
read-only can only be granted writable, so the wrapper does not enforce
`policy.read` as the protocol defines it (readable, not writable), and the
harness saw read-only files overwritten. A leak is never an expected
failure, so the read cases are skipped with that reason instead; the
driver still passes read paths on, as a caller would.
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_common"))
import sandspec_driver as sd  # noqa: E402
import praisonai_common as pc  # noqa: E402

CAPABILITIES = [
    "fs.write",
    "net.deny",
    "net.allow",
    "scope.signal",
    "scope.abstract_unix_socket",
    "limits.memory",
    "limits.processes",
    "limits.open_files",
    "timeout",
    "script",
    "env",
]

# What SandlockSandbox._build_sandbox_kwargs always makes readable.
WRAPPER_READABLE = ["/usr/lib/python3", "/usr/local/lib/python3", "/lib", "/usr/lib", "/bin", "/usr/bin"]
# Never made writable by this driver, whatever the policy reads: these
# directories themselves, and anything below the first group.
SYSTEM_TREES = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys"]
SYSTEM_DIRS = {"/", "/var", "/run", "/root", "/home", "/opt", "/srv", "/mnt", "/media", "/tmp"}


def _under(path, roots):
    p = os.path.normpath(path)
    return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)


def _is_system(path):
    return os.path.normpath(path) in SYSTEM_DIRS or _under(path, SYSTEM_TREES)


def landlock_kind():
    """The setup error kind matching sandlock's Landlock probe (which says
    -1 both for "not built in" and "disabled at boot")."""
    import sandlock

    try:
        abi, need = sandlock.landlock_abi_version(), sandlock.min_landlock_abi()
    except Exception:  # noqa: BLE001 - then the refusal has another cause
        return "other"
    if abi < 0:
        return "landlock_unavailable"
    if abi < need:
        return "abi_too_low"
    return "other"


class Backend:
    def __init__(self, script_api):
        import praisonai_sandbox
        import sandlock
        from praisonai_sandbox.sandlock import SandlockSandbox  # noqa: F401 - fail early if missing

        self.version = f"{praisonai_sandbox.__version__} (sandlock {sandlock.__version__})"
        self.script_api = script_api

    def hello(self):
        import sandlock

        try:
            need = int(sandlock.min_landlock_abi())
        except Exception:  # noqa: BLE001 - then the hello leaves it out
            need = None
        return {"name": "praisonai-sandlock", "version": self.version, "capabilities": CAPABILITIES,
                "requires_landlock_abi": need if need and need >= 1 else None}

    def run(self, req):
        from praisonai_sandbox.sandlock import SandlockSandbox
        from praisonaiagents.sandbox import ResourceLimits, SandboxConfig
        from praisonaiagents.sandbox.config import SecurityPolicy

        if req.cpu_seconds is not None:
            raise sd.Unsupported("limits.cpu_seconds (the wrapper's cpu_percent is a throttle)")
        if req.network_kind() == "ports":
            raise sd.Unsupported("TCP port lists (the wrapper's network is on or off)")
        if os.path.normpath(req.cwd) != "/":
            raise sd.Unsupported("cwd (the wrapper has no working-directory parameter)")
        if req.stdin:
            raise sd.Unsupported("stdin (the wrapper has no way to pass input)")

        extra = []
        for p in req.write:
            extra.append(str(p))
        for p in req.read + req.exec:
            p = str(p)
            if _under(p, WRAPPER_READABLE) or _is_system(p):
                continue
            extra.append(p)
        config = SandboxConfig(sandbox_type="sandlock", security_policy=SecurityPolicy(allowed_paths=extra))
        limits = ResourceLimits(
            memory_mb=max(1, req.memory >> 20) if req.memory is not None else 1 << 20,
            max_processes=req.processes if req.processes is not None else 4096,
            max_open_files=req.open_files if req.open_files is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            timeout_seconds=req.timeout,
            network_enabled=req.network_kind() == "allow",
            cpu_percent=100,
        )
        env = req.child_env()

        started = time.monotonic()
        try:
            sandbox = SandlockSandbox(config)
        except (RuntimeError, ImportError) as e:
            # The wrapper fails loud when sandlock's Landlock probe is below
            # sandlock's minimum; classify with the same probe.
            kind = landlock_kind()
            raise sd.SetupFailure(kind, f"SandlockSandbox refused to start: {e}")

        async def go():
            try:
                if req.script is None:
                    return await sandbox.run_command(list(req.argv), limits=limits, env=env)
                language = pc.script_language(req)
                if self.script_api == "execute":
                    return await sandbox.execute(req.script["body"], language=language, limits=limits, env=env)
                with sd.script_dir(req.script["body"], "script" + pc.script_suffix(language)) as (_d, path):
                    return await sandbox.execute_file(path, limits=limits, env=env)
            finally:
                await sandbox.stop()

        res = pc.call(go())
        return pc.translate(res, req, started)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", choices=["execute", "execute_file"], default="execute",
                    help="which public API runs scripts (default: execute)")
    args = ap.parse_args()
    return sd.serve(lambda: Backend(args.scripts), "praisonai-sandlock")


if __name__ == "__main__":
    sys.exit(main())
