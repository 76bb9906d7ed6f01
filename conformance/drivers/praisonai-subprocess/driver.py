"""sandspec driver for praisonai-sandbox's SubprocessSandbox (0.1.16).

The weak backend: a plain subprocess with rlimits, a timeout and checks on
the text of the command. It is driven through its public API
(``run_command(argv, limits, env, working_dir)`` for commands,
``execute(code, language)`` for scripts, or ``execute_file`` with
``--scripts execute_file``). It passes on every policy field the API can
express, but claims only what the wrapper enforces (PROTOCOL.md: a claim is
a promise the harness holds the backend to, and a leak the harness sees
fails whatever an expectation file says): not fs.read, fs.write or
net.deny, whose checks are on the text of the command or do nothing, and
not timeout, which kills only the process group (a setsid grandchild lives
on). Their cases are skipped with that reason. What the wrapper does was
read from praisonai_sandbox/subprocess.py:

  read, write, exec  SecurityPolicy.allowed_paths: only argv words that look
              like paths are compared with it; the process itself can open
              anything. allow_file_write = bool(write) (read by nothing).
  network     SecurityPolicy.allow_network: only decides whether proxy
              variables are passed on. Port lists cannot be expressed.
  limits      memory -> RLIMIT_AS (memory_mb, rounded down to MiB, >= 1),
              open_files -> RLIMIT_NOFILE. processes: the wrapper
              deliberately sets no RLIMIT_NPROC (not claimed, refused).
              cpu_seconds: not expressible (refused).
              output_bytes -> SecurityPolicy.max_output_size; the wrapper
              appends "\\n[OUTPUT TRUNCATED]" to what it cut.
  timeout     ResourceLimits.timeout_seconds; the process group is killed.
  env         env= (the wrapper adds HOME=<its temp dir> and, unless given,
              a PATH starting with the driver's Python directory).
  cwd         working_dir=.
  stdin       not expressible (refused when non-empty).
The wrapper's default deny-lists (blocked_commands such as "dd", blocked
imports such as "subprocess", blocked_paths such as /etc/passwd) are
substring heuristics the sandspec policy does not ask for; this driver
empties them so that cases fail or pass on the isolation they test, and
sets allow_subprocess=True (a sandspec policy does not forbid shells).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_common"))
import sandspec_driver as sd  # noqa: E402
import praisonai_common as pc  # noqa: E402

CAPABILITIES = [
    "net.allow",
    "limits.memory",
    "limits.open_files",
    "limits.output_bytes",
    "script",
    "env",
    "cwd",
]

TRUNCATION_MARK = "\n[OUTPUT TRUNCATED]"


class Backend:
    def __init__(self, script_api):
        import praisonai_sandbox
        from praisonai_sandbox.subprocess import SubprocessSandbox  # noqa: F401 - fail early if missing

        self.version = praisonai_sandbox.__version__
        self.script_api = script_api

    def hello(self):
        return {"name": "praisonai-subprocess", "version": self.version, "capabilities": CAPABILITIES}

    def run(self, req):
        from praisonai_sandbox.subprocess import SubprocessSandbox
        from praisonaiagents.sandbox import ResourceLimits, SandboxConfig
        from praisonaiagents.sandbox.config import SecurityPolicy

        if req.cpu_seconds is not None:
            raise sd.Unsupported("limits.cpu_seconds (the wrapper sets no RLIMIT_CPU)")
        if req.processes is not None:
            raise sd.Unsupported("limits.processes (the wrapper deliberately sets no RLIMIT_NPROC)")
        if req.network_kind() == "ports":
            raise sd.Unsupported("TCP port lists (the wrapper's network is on or off)")
        if req.stdin:
            raise sd.Unsupported("stdin (the wrapper has no way to pass input)")

        policy = SecurityPolicy(
            allow_network=req.network_kind() == "allow",
            allow_file_write=bool(req.write),
            allow_subprocess=True,
            allowed_paths=[str(p) for p in req.read + req.write + req.exec],
            blocked_paths=[],
            blocked_commands=[],
            blocked_imports=[],
            max_output_size=req.output_bytes,
        )
        config = SandboxConfig(sandbox_type="subprocess", security_policy=policy)
        limits = ResourceLimits(
            memory_mb=max(1, req.memory >> 20) if req.memory is not None else 0,
            max_open_files=req.open_files if req.open_files is not None else 0,
            timeout_seconds=req.timeout,
            network_enabled=req.network_kind() == "allow",
        )
        env = req.child_env()
        sandbox = SubprocessSandbox(config)
        started = time.monotonic()

        async def go():
            try:
                if req.script is None:
                    return await sandbox.run_command(list(req.argv), limits=limits, env=env, working_dir=req.cwd)
                language = pc.script_language(req)
                if self.script_api == "execute":
                    return await sandbox.execute(req.script["body"], language=language, limits=limits,
                                                 env=env, working_dir=req.cwd)
                with sd.script_dir(req.script["body"], "script" + pc.script_suffix(language)) as (_d, path):
                    # execute_file reads the file and calls execute(code)
                    # with the default language (python) and no working_dir.
                    return await sandbox.execute_file(path, limits=limits, env=env)
            finally:
                await sandbox.stop()

        res = pc.call(go())
        out = pc.translate(res, req, started, slack=len(TRUNCATION_MARK))
        if res.stdout and res.stdout.endswith(TRUNCATION_MARK) or res.stderr and res.stderr.endswith(TRUNCATION_MARK):
            out["output_truncated"] = True
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", choices=["execute", "execute_file"], default="execute",
                    help="which public API runs scripts (default: execute)")
    args = ap.parse_args()
    return sd.serve(lambda: Backend(args.scripts), "praisonai-subprocess")


if __name__ == "__main__":
    sys.exit(main())
