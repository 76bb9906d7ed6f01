"""What the two praisonai-sandbox drivers share: calling the async public API
(``execute``, ``execute_file``, ``run_command``) and turning its
``SandboxResult`` back into a protocol outcome.

The translation reports what the wrapper said, not what the driver guesses:
a ``SandboxStatus.TIMEOUT`` is a timeout even when the wrapper decided it
from an ambiguous exit code, because the point of these drivers is to show
what a caller of the wrapper is told.
"""

import asyncio
import os
import signal as _signal
import time

import sandspec_driver as sd

# The interpreters the wrapper's `execute(code, language)` knows: python
# runs `python3`, bash runs `bash`. `sh` scripts are handed to bash (a POSIX
# sh script runs under bash); anything else cannot be expressed.
PYTHON_NAMES = {"python3", "python"}
SHELL_NAMES = {"bash", "sh"}


def script_language(req):
    """"python" or "bash" for the request's script, or raises Unsupported."""
    interp = req.script["interpreter"]
    base = os.path.basename(interp[0])
    if len(interp) != 1:
        raise sd.Unsupported(
            f"script interpreter arguments {interp[1:]!r} (the wrapper's execute() takes only a language)"
        )
    if base in PYTHON_NAMES:
        return "python"
    if base in SHELL_NAMES:
        return "bash"
    raise sd.Unsupported(f"script interpreter {interp[0]!r} (the wrapper runs python3 or bash only)")


def script_suffix(language):
    return ".py" if language == "python" else ".sh"


def call(coro):
    """Runs one coroutine of the wrapper to completion."""
    return asyncio.run(coro)


def translate(res, req, started, slack=0):
    """A protocol result from a praisonai ``SandboxResult``; output is cut at
    the policy's cap plus ``slack`` bytes (room for a wrapper's own marker)."""
    from praisonaiagents.sandbox import SandboxStatus

    duration = time.monotonic() - started
    stdout = (res.stdout or "").encode("utf-8", errors="replace")
    stderr = (res.stderr or "").encode("utf-8", errors="replace")
    status = res.status
    code = res.exit_code
    if status == SandboxStatus.TIMEOUT:
        outcome = sd.TIMEOUT
    elif status in (SandboxStatus.COMPLETED, SandboxStatus.FAILED) and code is not None:
        # asyncio's returncode convention: -N means killed by signal N.
        if code < 0:
            outcome = sd.signaled(-code)
        else:
            outcome = sd.exited(code)
    elif status == SandboxStatus.KILLED:
        outcome = sd.signaled(_signal.SIGKILL)
    else:
        # FAILED without an exit code: the wrapper refused or failed before
        # the command ran (policy violation, spawn error, sandlock failure).
        msg = res.error or f"the wrapper returned status {getattr(status, 'value', status)} without an exit code"
        return sd.setup_error("other", f"praisonai-sandbox: {msg}", duration)
    return sd.result(outcome, stdout, stderr, cap=req.output_bytes + slack, duration_s=duration)
