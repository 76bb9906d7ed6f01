"""sandspec driver for bubblewrap (bwrap 0.8, Debian 12).

bwrap builds namespaces and mounts, then runs the command; it has no
timeout, no limits and no output handling, so this driver supplies those
around it (that is how bwrap is meant to be used). How the policy maps:

  read, exec   --ro-bind P P at P's canonical path, the symlinks met on
               the way recreated with --symlink (a path under /proc:
               --proc /proc, a fresh procfs of the new pid namespace; under
               /dev: --dev-bind, since plain binds are nodev and a device
               node's own mode decides writes, so /dev is never read-only)
  write        --bind P P; everything else is read-only (--remount-ro /
               after the mounts: the root is bwrap's tmpfs of mount points)
               Binds are strict: a missing path makes bwrap fail before the
               command runs ("Can't find source path"), reported as a
               setup_error of kind path_error. Nothing is filtered.
  network      deny: --unshare-net (only loopback, down);
               allow: the host's network; TCP port lists: not expressible
               (refused as invalid_policy).
  scope        --unshare-pid is always on (it is what makes the timeout kill
               the whole tree), so processes outside cannot be signalled;
               abstract unix sockets are per network namespace, so they are
               scoped exactly when the network is denied (scope with network
               allowed is refused).
  limits       setrlimit in the child before bwrap starts, inherited by the
               command: memory -> RLIMIT_AS, open_files -> RLIMIT_NOFILE,
               cpu_seconds -> RLIMIT_CPU. processes is not claimed:
               RLIMIT_NPROC counts every process of the user, and is not
               enforced for root at all.
  output_bytes the driver reads both pipes concurrently and keeps at most
               that many bytes of each.
  timeout      the driver's deadline kills bwrap's process group; bwrap is
               pid 1's parent in the sandbox's pid namespace with
               --die-with-parent, so the whole namespace dies with it.
  end of run   bwrap exits as soon as the command does, before the
               namespace's pid 1 (and with it whatever the command left
               behind) has died: the driver is a child subreaper, so that
               pid 1 becomes its child, and it answers only once that pid 1
               is gone (the kernel empties a pid namespace before its init
               exits), at most NAMESPACE_GRACE_S later.
  env          --clearenv, then --setenv for each variable (PATH default).
  cwd          --chdir.
  stdin        a file on the command's fd 0.
  script       the body in a file in a fresh directory, --ro-bind'ed at the
               same path; the interpreter runs that file.
Always: --die-with-parent --new-session --unshare-pid.
bwrap reports a command killed by signal N as exit code 128+N (its status
JSON says "exit-code"), so this driver cannot report `signaled`: it reports
what bwrap says.
"""

import json
import os
import ctypes
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_common"))
import sandspec_driver as sd  # noqa: E402

CAPABILITIES = [
    "fs.read",
    "fs.write",
    "net.deny",
    "net.allow",
    "scope.signal",
    "scope.abstract_unix_socket",
    "limits.memory",
    "limits.open_files",
    "limits.cpu_seconds",
    "limits.output_bytes",
    "timeout",
    "script",
    "stdin",
    "env",
    "cwd",
]

# The grace for bwrap to report its status after the command ended.
STATUS_GRACE_S = 5.0
# The grace for the sandbox's pid namespace to die after bwrap exited.
NAMESPACE_GRACE_S = 5.0
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper():
    """Make this driver the reaper of its orphaned descendants: bwrap's
    child (pid 1 of the sandbox's pid namespace) outlives bwrap for a
    moment, and then stays this driver's child, its pid held until reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise sd.SetupFailure("other", f"failed to become a child subreaper: {os.strerror(err)}")


def _await_namespace_end(pid):
    """Wait until the sandbox's pid 1 (host pid ``pid``, reparented to this
    driver when bwrap exited) is gone, at most NAMESPACE_GRACE_S, and reap
    it. The kernel kills and reaps everything in a pid namespace before its
    init exits, so after this nothing the command started is alive. If the
    grace runs out, the harness sees whatever is left as survivors."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return  # had exited already: now reaped
    except ChildProcessError:
        return  # not this driver's child: bwrap reaped it, it is gone
    # Our unreaped child: the pid cannot be reused while we wait on it.
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(NAMESPACE_GRACE_S * 1000)
    finally:
        os.close(fd)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _depth(path):
    return len([c for c in os.path.normpath(path).split("/") if c])


def _resolve(path):
    """The canonical form of an absolute path, and every symlink met while
    resolving it ({link path: link target}). A missing component ends the
    walk: the rest is taken as written."""
    links = {}
    todo = [c for c in path.split("/") if c]
    cur = "/"
    hops = 0
    while todo:
        c = todo.pop(0)
        if c == ".":
            continue
        if c == "..":
            cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, c)
        if os.path.islink(nxt):
            hops += 1
            if hops > 40:
                raise sd.SetupFailure("path_error", f"too many levels of symbolic links in {path}")
            target = os.readlink(nxt)
            links[nxt] = target
            if target.startswith("/"):
                cur = "/"
            todo = [t for t in target.split("/") if t] + todo
        else:
            cur = nxt
    return cur, links


def _under(path, root):
    p = os.path.normpath(path)
    return p == root or p.startswith(root + "/")


class CappedReader(threading.Thread):
    """Drains one pipe, keeping at most ``cap`` bytes."""

    def __init__(self, f, cap):
        super().__init__(daemon=True)
        self.f, self.cap = f, cap
        self.buf = bytearray()
        self.truncated = False

    def run(self):
        while True:
            chunk = self.f.read1(65536) if hasattr(self.f, "read1") else self.f.read(65536)
            if not chunk:
                return
            room = self.cap - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]
            if len(chunk) > max(room, 0):
                self.truncated = True


class Backend:
    def __init__(self):
        self.bwrap = shutil.which("bwrap")
        if not self.bwrap:
            raise sd.SetupFailure("other", "failed to find bwrap on PATH: run conformance/drivers/bwrap/setup")
        out = subprocess.run([self.bwrap, "--version"], capture_output=True, text=True, check=False).stdout
        self.version = out.strip().split()[-1] if out.strip() else "unknown"
        _become_subreaper()

    def hello(self):
        return {"name": "bwrap", "version": self.version, "capabilities": CAPABILITIES}

    def args(self, req, script_dir=None):
        """The bwrap arguments before `--` for this policy."""
        kind = req.network_kind()
        if kind == "ports":
            raise sd.Unsupported("TCP port lists (bwrap's network is the host's or none)")
        if "abstract_unix_socket" in req.scope and kind != "deny":
            raise sd.Unsupported("abstract unix socket scoping with the network allowed (it needs --unshare-net)")
        if req.processes is not None:
            raise sd.Unsupported("limits.processes (RLIMIT_NPROC is per user, and not enforced for root)")
        a = ["--die-with-parent", "--new-session", "--unshare-pid"]
        if kind == "deny":
            a.append("--unshare-net")
        # Each allowlisted path is mounted at its canonical location, and
        # the symlinks met on the way there are recreated, so the host's
        # paths resolve inside as they do outside (/bin/sh through
        # /bin -> usr/bin; the probe's ELF interpreter through /lib64 ->
        # usr/lib64 -> /lib/x86_64-linux-gnu/...). A missing path is
        # mounted as given, so bwrap refuses it.
        mounts = {}  # canonical path -> "ro" | "rw" | "dev"
        links = {}  # link path -> target
        proc = False
        wanted = [(str(p), "ro") for p in req.read + req.exec] + [(str(p), "rw") for p in req.write]
        if script_dir:
            wanted.append((script_dir, "ro"))
        for path, access in wanted:
            path = os.path.normpath(path)
            if _under(path, "/proc"):
                proc = True
                continue
            canonical, chain = _resolve(path)
            links.update(chain)
            if _under(canonical, "/dev"):
                access = "dev"
            if mounts.get(canonical) in ("rw", "dev"):
                continue
            mounts[canonical] = access
        strength = {"ro": 0, "rw": 1, "dev": 1}
        ordered = sorted(mounts.items(), key=lambda m: (_depth(m[0]), m[0]))
        kept = []
        for path, access in ordered:
            # A path inside a mount that already grants as much is visible
            # already; mounting it again would only fail on a read-only
            # parent.
            if any(_under(path, q) and q != path and strength[qa] >= strength[access] for q, qa in kept):
                continue
            kept.append((path, access))
            opt = {"ro": "--ro-bind", "rw": "--bind", "dev": "--dev-bind"}[access]
            a += [opt, path, path]
        # The host's top-level links (/bin -> usr/bin on merged-/usr
        # systems) whose target is mounted: on the host a policy granting
        # /usr lets `/bin/sh` run, whatever path names it.
        for name in sorted(os.listdir("/")):
            link = "/" + name
            if os.path.islink(link) and link not in links:
                target_path, _ = _resolve(link)
                if any(_under(target_path, q) for q, _ in kept):
                    links[link] = os.readlink(link)
        for link, target in sorted(links.items(), key=lambda l: (_depth(l[0]), l[0])):
            if link in mounts or any(_under(link, q) for q, _ in kept):
                continue
            a += ["--symlink", target, link]
        if proc:
            a += ["--proc", "/proc"]
        # bwrap's root is a tmpfs holding the mount points; left writable,
        # a write outside the write paths would "succeed" into it.
        a += ["--remount-ro", "/"]
        a.append("--clearenv")
        for k, v in sorted(req.child_env().items()):
            a += ["--setenv", k, v]
        a += ["--chdir", str(req.cwd)]
        return a

    def run(self, req):
        if req.script is not None:
            with sd.script_dir(req.script["body"]) as (d, path):
                return self._run(req, self.args(req, d), req.script["interpreter"] + [path])
        return self._run(req, self.args(req), list(req.argv))

    def _run(self, req, bwrap_args, argv):
        status_r, status_w = os.pipe()
        limits = []
        if req.memory is not None:
            limits.append((resource.RLIMIT_AS, int(req.memory)))
        if req.open_files is not None:
            limits.append((resource.RLIMIT_NOFILE, int(req.open_files)))
        if req.cpu_seconds is not None:
            limits.append((resource.RLIMIT_CPU, int(req.cpu_seconds)))

        def preexec():
            for which, value in limits:
                resource.setrlimit(which, (value, value))

        cmd = [self.bwrap, *bwrap_args, "--json-status-fd", str(status_w), "--", *argv]
        with tempfile.TemporaryFile() as stdin:
            stdin.write(req.stdin)
            stdin.flush()
            stdin.seek(0)
            started = time.monotonic()
            try:
                p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(status_w,), start_new_session=True,
                                     # No preexec_fn without limits: Python then spawns with
                                     # vfork instead of fork + a Python callback.
                                     preexec_fn=preexec if limits else None)
            except OSError as e:
                os.close(status_r)
                os.close(status_w)
                raise sd.SetupFailure("spawn_failed", f"failed to start bwrap: {e}")
        os.close(status_w)
        status_lines = []
        status_reader = threading.Thread(target=lambda: status_lines.extend(os.fdopen(status_r, "rb").read().splitlines()), daemon=True)
        status_reader.start()
        out = CappedReader(p.stdout, req.output_bytes)
        err = CappedReader(p.stderr, req.output_bytes)
        out.start()
        err.start()
        timed_out = False
        try:
            p.wait(timeout=req.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        duration = time.monotonic() - started
        status_reader.join(STATUS_GRACE_S)
        status = {}
        for line in status_lines:
            try:
                status.update(json.loads(line))
            except ValueError:
                pass
        # With bwrap dead, the namespace's pid 1 dies and takes everything
        # in it along; the pipes then close.
        if isinstance(status.get("child-pid"), int):
            _await_namespace_end(status["child-pid"])
        for t in (out, err):
            t.join(STATUS_GRACE_S)
        truncated = out.truncated or err.truncated

        if timed_out:
            return sd.result(sd.TIMEOUT, bytes(out.buf), bytes(err.buf), cap=req.output_bytes,
                             truncated=truncated, duration_s=duration)
        if "exit-code" in status:
            return sd.result(sd.exited(status["exit-code"]), bytes(out.buf), bytes(err.buf), cap=req.output_bytes,
                             truncated=truncated, duration_s=duration)
        # No exit status: bwrap gave up before (or while) starting the
        # command: its own message is on stderr.
        message = bytes(err.buf).decode("utf-8", errors="replace").strip() or f"bwrap exited with {p.returncode}"
        if "Can't find source path" in message or "Can't mkdir" in message or "Can't create file" in message:
            kind = "path_error"
        elif "execvp" in message:
            kind = "spawn_failed"
        else:
            kind = "other"
        return sd.setup_error(kind, message, duration)


if __name__ == "__main__":
    sys.exit(sd.serve(Backend, "bwrap"))
