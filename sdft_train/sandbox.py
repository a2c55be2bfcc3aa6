"""Run model-written Python in a sandbox (HumanEval), and say whether its tests passed.

    check = Check(solution=prompt + completion, setup=prompt, test=problem["test"] + "check(add)\\n", entry="add")
    outcome = run_check(check)
    outcome.passed, outcome.status   # True, "passed" | False, "failed: AssertionError" / "timed out" / ...
    outcome.isolation                # what the platform allowed (see below)

The verdict comes from a process the model's code cannot reach. Each check
runs as two processes:

- the solution process runs the model's code (`solution`) and nothing else;
- the harness process runs the benchmark's tests (`setup`, then `test`), in
  which `entry` names a stand-in for the solution's function: a call sends the
  arguments to the solution process over a pipe and gets its return value
  back as plain data (None, bool, int, float, complex, str, bytes, list,
  tuple, dict, set), so an answer cannot be an object that equals anything.

The harness alone tells the parent the verdict, over a pipe the solution
process closed before the model's code ran; it reads the tests only after the
solution process was forked, so they are never in that process' memory; it is
not dumpable (no ptrace, no /proc/PID/mem for the other process). A pass is
"the tests ran to their end and the solution process answered every call":
`sys.exit(0)`, `os._exit(0)`, a kill, writing a fake verdict to any file
descriptor, or reading the runner's memory cannot make one.

Where the kernel allows it (root, or unprivileged user namespaces), the
processes run in new network, mount and PID namespaces, in a root of their
own: a small read-only tmpfs holding read-only binds of the Python standard
library and the system's shared libraries (the checkout, the data, home
folders, /etc, /run are not there), /dev/null, zero, full, random and urandom,
a /proc of their own PID namespace (no other process is visible), and /tmp, a
tmpfs of `disk_mb` MB, the only writable place. No network interface is up.
The harness is PID 1 of the namespace: the solution cannot signal it, and when
it ends every process the solution started dies with it. Everywhere:
setrlimit limits (CPU, address space, processes, file size, open files, no
core dumps), an empty environment, Python in isolated mode; as root, both
processes drop to `nobody`; no new privileges; no capabilities.

Without namespaces the sandbox still runs, with less: the host's files (what
the user may read and write, files capped at `file_mb`), the host's /proc and
network, and a process that left the process group can outlive the run.
`Outcome.isolation` records what applied; the humaneval task says it in the
results' notes.

`run_python(program)` runs a program alone (no tests): it passes when the
program ran to its end, which the program reports itself, so that pass is not
proof against hostile code; use run_check for scores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    """What one check may use. The defaults fit HumanEval (its tests take milliseconds)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    processes: int = 32  # counts every process of the sandbox user, threads included
    file_mb: int = 4  # largest file the program may write
    disk_mb: int = 16  # all it may write together (the size of its /tmp), where namespaces allow
    open_files: int = 64


@dataclass(frozen=True)
class Check:
    """A program and the tests that judge it. Only `solution` runs in the solution process."""

    solution: str  # the model's code, e.g. the prompt and the completion
    test: str = ""  # run by the harness, with `entry` bound to the solution's function; empty: run the solution alone
    entry: str | None = None  # the function the tests call
    setup: str = ""  # run by the harness before `entry` is bound (the prompt: imports, helpers the tests use)
    preload: tuple[str, ...] = ()  # standard modules imported once, before the processes split


@dataclass
class Outcome:
    passed: bool
    status: str  # "passed", "failed: <last line of the error>", "timed out"
    seconds: float
    isolation: dict  # what the platform allowed: namespaces, filesystem, proc, network, writable, user


# The runner starts as the parent's user, sets up the jail, then splits into
# the harness and the solution process. It reads its settings from stdin in
# two messages: the first (limits, solution) before the split, the second
# (setup, tests) after it, in the harness only.
RUNNER = r"""
import builtins, ctypes, json, os, resource, select, signal, sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 0x4000, 1 << 18)
NEWNS, NEWNET, NEWPID, NEWUSER = 0x00020000, 0x40000000, 0x20000000, 0x10000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
MAX_MESSAGE = 16 << 20  # bytes in one answer of the solution process
libc = ctypes.CDLL(None, use_errno=True)


def read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def receive(fd):
    n = int.from_bytes(read_exact(fd, 8), "big")
    return json.loads(read_exact(fd, n))


def send(fd, obj):
    data = json.dumps(obj).encode()
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def describe(e):
    text = str(e)
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text.strip() else type(e).__name__


# ---- plain data across the pipe: exact types, nothing with behaviour of its own


def encode(v):
    if v is None or v is True or v is False:
        return v
    for kind in (int, float, str):
        if isinstance(v, kind):
            return kind(v) if type(v) is not kind else v
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [encode(x) for x in v]
        return items if isinstance(v, list) else {
            "t" if isinstance(v, tuple) else "f" if isinstance(v, frozenset) else "s": items}
    if isinstance(v, dict):
        return {"d": [[encode(k), encode(x)] for k, x in v.items()]}
    if isinstance(v, bytes):
        return {"b": bytes(v).hex()}
    if isinstance(v, complex):
        return {"c": [float(v.real), float(v.imag)]}
    raise TypeError(f"a {type(v).__name__} cannot cross the sandbox (plain data only)")


def decode(v):
    if isinstance(v, list):
        return [decode(x) for x in v]
    if not isinstance(v, dict):
        return v  # None, bool, int, float, str as json made them
    (tag, x), = v.items()
    if tag == "t":
        return tuple(decode(i) for i in x)
    if tag == "s":
        return {decode(i) for i in x}
    if tag == "f":
        return frozenset(decode(i) for i in x)
    if tag == "d":
        return {decode(k): decode(i) for k, i in x}
    if tag == "b":
        return bytes.fromhex(x)
    if tag == "c":
        return complex(float(x[0]), float(x[1]))
    raise ValueError(f"unknown tag {tag!r}")


# ---- the jail


def flags_of(path):
    # In a user namespace a bind must keep the flags the kernel locked on its source.
    f = os.statvfs(path).f_flag
    return f & (MS_NOSUID | MS_NODEV | MS_NOEXEC) | (f & 1024) | (f & 2048) | ((1 << 21) if f & 4096 else 0)


def mount(source, target, fstype, flags, data=None):
    if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                  data and data.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")


def jail(top, disk_mb, iso):
    # A new root on a small tmpfs, holding read-only binds of what Python needs.
    mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    keep = [p for p in sys.path if p and os.path.exists(p)]
    keep += ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"]
    done = []
    for path in keep:
        path = os.path.abspath(path)
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in done) or not os.path.lexists(path):
            continue
        where = top + path
        os.makedirs(os.path.dirname(where), mode=0o755, exist_ok=True)
        if os.path.islink(path):  # /lib -> usr/lib: the link, and what it points to is bound on its own
            os.symlink(os.readlink(path), where)
            continue
        if os.path.isdir(path):
            os.makedirs(where, mode=0o755, exist_ok=True)
        else:
            open(where, "w").close()
        mount(path, where, None, MS_BIND | MS_REC)
        mount(None, where, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | flags_of(path))
        done.append(path)
    for path in done:  # Python's own site-packages are not needed (-S) and not shown
        site = os.path.join(top + path, "site-packages")
        if os.path.isdir(site) and path in sys.path:
            mount("tmpfs", site, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    os.mkdir(top + "/dev", 0o755)
    for name in ("null", "zero", "full", "random", "urandom"):
        open(f"{top}/dev/{name}", "w").close()
        mount(f"/dev/{name}", f"{top}/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{top}/dev/{name}")
    os.mkdir(top + "/proc", 0o555)
    os.mkdir(top + "/tmp", 0o755)
    mount("tmpfs", top + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={disk_mb}m,mode=1777")
    iso["writable"] = f"/tmp, a {disk_mb} MB tmpfs"
    os.chdir(top)
    if PIVOT_ROOT is not None and libc.syscall(PIVOT_ROOT, b".", b".") == 0:
        libc.umount2(b".", 2)  # MNT_DETACH: the host's tree is gone from this namespace
    else:
        os.chroot(".")
    os.chdir("/")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    iso["filesystem"] = "own read-only root (Python's standard library, shared libraries)"
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        iso["proc"] = "own PID namespace"
    except OSError:
        iso["proc"] = "none"


def drop(cfg, user):
    # Resource limits, then the unprivileged user (as root) or no capabilities (in a user namespace).
    mb = 1 << 20
    # The CPU limit's soft edge sends SIGXCPU (read as "timed out" by the harness), the hard one kills.
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 1))
    for res, value in ((resource.RLIMIT_AS, cfg["memory_mb"] * mb), (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb),
                       (resource.RLIMIT_NOFILE, cfg["open_files"]), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NPROC, cfg["processes"])):
        resource.setrlimit(res, (value, value))
    if user is not None:
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)
    else:
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        libc.capset(header, (ctypes.c_uint32 * 6)())
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# ---- the two processes


def solution_process(cfg, user, calls, answers, cwd):
    # Before any of the model's code: nothing of the harness' stays open here.
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in sorted((calls, answers)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    drop(cfg, user)
    if not cfg["pid_namespace"]:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.chdir(cwd)
    source, entry = cfg.pop("solution"), cfg["entry"]
    exit_now = os._exit
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "solution.py", "exec"), ns)
        fn = ns.get(entry) if entry else None
        if entry and not callable(fn):
            raise NameError(f"the solution defines no function {entry!r}")
    except BaseException as e:
        send(answers, {"error": describe(e)})
        exit_now(1)
    del source
    send(answers, {"loaded": True})
    while True:
        try:
            call = receive(calls)
        except EOFError:
            exit_now(0)
        try:
            reply = {"value": encode(fn(*decode(call["args"]), **decode(call["kwargs"])))}
        except BaseException as e:
            reply = {"raised": [type(e).__name__, describe(e)]}
        send(answers, reply)


class Answers:
    # The solution process' answers; None once it is gone (exited, or closed its end).
    def __init__(self, fd, child):
        self.fd, self.buf = fd, bytearray()
        try:
            self.pidfd = os.pidfd_open(child)
        except (AttributeError, OSError):
            self.pidfd = None

    def read(self, n):
        while len(self.buf) < n:
            ready = [self.fd] if self.pidfd is None else select.select([self.fd, self.pidfd], [], [])[0]
            if self.fd in ready:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    return None
                self.buf += chunk
            else:
                return None  # it exited; a process it left behind may hold the pipe
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def next(self):
        head = self.read(8)
        n = int.from_bytes(head, "big") if head else 0
        if head is None or n > MAX_MESSAGE:
            return None
        body = self.read(n)
        try:
            reply = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):
            return None
        return reply if isinstance(reply, dict) else None


TIMED_OUT = "timed out"


def ended(child):
    # What became of the solution process, once its answers stopped.
    for _ in range(200):
        pid, status, usage = os.wait4(child, os.WNOHANG)
        if pid:
            break
        select.select([], [], [], 0.001)
    else:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        return "closed its pipe before the end"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        cpu = usage.ru_utime + usage.ru_stime
        if -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu >= CPU_SECONDS[0]):
            return f"{TIMED_OUT} (its {CPU_SECONDS[0]} s of CPU time)"
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}" if code else "exited before the end of the program"


class Gone(Exception):
    pass


def exception_of(name, text):
    # The builtin exception of that name; not StopIteration, which would end a test's loop over map() silently.
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, (StopIteration, StopAsyncIteration)):
        try:
            return cls(text.partition(": ")[2] or text)
        except Exception:
            pass
    return RuntimeError(text)


CPU_SECONDS = [0]  # the solution process's CPU limit, set by main() before the harness runs


def failed(why):
    # A solution out of CPU time timed out, like one out of wall time; anything else failed.
    return why if why.startswith(TIMED_OUT) else "failed: " + why


def harness(answers, calls, child, rest, entry):
    # The verdict: the tests ran to their end, and the solution process answered every call.
    state = {"gone": None}
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:  # while the solution process loads
        exec(compile(rest["setup"], "setup.py", "exec"), ns)
    except BaseException as e:
        return False, "failed: the tests' setup: " + describe(e)
    first = answers.next()
    if first is None:
        return False, failed(ended(child))
    if "error" in first:
        return False, "failed: " + str(first["error"])
    if not rest["test"]:
        return True, "passed"

    def call(*args, **kwargs):
        if state["gone"]:
            raise Gone(state["gone"])
        try:
            send(calls, {"args": encode(list(args)), "kwargs": encode(kwargs)})
        except OSError:
            pass  # its end is closed; the answer below says why
        reply = answers.next()
        try:
            if reply is None:
                raise KeyError
            if "raised" not in reply:
                return decode(reply["value"])
            name, text = reply["raised"]
            raised = exception_of(str(name), str(text))
        except (KeyError, TypeError, ValueError, RecursionError):
            state["gone"] = ended(child) if reply is None else "answered out of protocol"
            raise Gone(state["gone"]) from None
        raise raised

    call.__name__ = entry
    ns[entry] = call
    try:
        exec(compile(rest["test"], "test.py", "exec"), ns)
    except BaseException as e:
        return False, failed(state["gone"] or describe(e))
    if state["gone"]:
        return False, failed(state["gone"])
    return True, "passed"


def main():
    os.umask(0o022)
    cfg = receive(0)
    CPU_SECONDS[0] = cfg["cpu_seconds"]
    root = os.geteuid() == 0
    user = cfg["user"] if root else None
    iso = {"namespaces": False, "filesystem": "host", "proc": "host", "network": "host",
           "writable": f"host (files up to {cfg['file_mb']} MB)", "user": user}
    cfg["pid_namespace"] = False
    cwd = os.getcwd()
    flags = NEWNS | NEWNET | NEWPID | (0 if root else NEWUSER)
    uid, gid = os.getuid(), os.getgid()
    if cfg["namespaces"] and libc.unshare(flags) == 0:
        if not root:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        iso.update(namespaces=True, network="none")
        cfg["pid_namespace"] = True
        init = os.fork()  # the first child is PID 1 of the new PID namespace: the harness
        if init:
            _, status = os.waitpid(init, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            jail(cwd, cfg["disk_mb"], iso)
            cwd = "/tmp"
        except OSError as e:
            iso["jail_error"] = describe(e)
    for name in cfg["preload"]:
        __import__(name)
    calls_r, calls_w = os.pipe()
    answers_r, answers_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(calls_w)
            os.close(answers_r)
            solution_process(cfg, user, calls_r, answers_w, cwd)
        finally:
            os._exit(1)
    os.close(calls_r)
    os.close(answers_w)
    entry = cfg["entry"]
    del cfg["solution"]
    drop(cfg, user)
    libc.prctl(PR_SET_DUMPABLE, 0)
    os.write(1, (json.dumps(iso) + "\n").encode())
    rest = receive(0)  # setup and tests: only now, in the harness alone
    os.close(0)
    passed, status = harness(Answers(answers_r, child), calls_w, child, rest, entry)
    os.write(1, (json.dumps({"passed": passed, "status": status}) + "\n").encode())
    try:
        os.kill(child, signal.SIGKILL)
    except OSError:
        pass
    os._exit(0)


main()
"""


def run_check(check: Check, limits: Limits = Limits(), *, namespaces: bool = True,
              user: int | None = NOBODY) -> Outcome:
    """Run `check` in the sandbox: passed only if its tests ran to their end. See the module docstring."""
    root = os.geteuid() == 0
    work = tempfile.mkdtemp(prefix="sdft-sandbox-")
    t0 = time.monotonic()
    proc, out, err, timed_out = None, b"", b"", False
    try:
        if root and user is not None:
            os.chown(work, user, user)  # the program's folder when no namespace gives it its own /tmp
        first = asdict(limits) | {"namespaces": namespaces, "user": user if root else None, "entry": check.entry,
                                  "preload": list(check.preload), "solution": check.solution}
        second = {"setup": check.setup, "test": check.test}
        data = b"".join(_frame(m) for m in (first, second))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", RUNNER], cwd=work, env={}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
        try:
            out, err = proc.communicate(data, timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()  # what came before the kill
    finally:
        if proc is not None:
            _kill_group(proc)
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.monotonic() - t0, 4)
    lines = [_json(line) for line in out.decode(errors="replace").splitlines()]
    isolation = lines[0] if lines and isinstance(lines[0], dict) else {}
    verdict = lines[1] if len(lines) > 1 and isinstance(lines[1], dict) else None
    if timed_out:
        return Outcome(False, "timed out", seconds, isolation)
    if verdict is None:
        why = err.decode(errors="replace").strip().splitlines()
        return Outcome(False, "failed: no verdict from the sandbox" + (f" ({why[-1][:300]})" if why else ""),
                       seconds, isolation)
    passed = verdict.get("passed") is True
    return Outcome(passed, "passed" if passed else str(verdict.get("status")), seconds, isolation)


def run_python(program: str, limits: Limits = Limits(), *, namespaces: bool = True,
               user: int | None = NOBODY) -> Outcome:
    """Run `program` alone in the sandbox; passed when it ran to its end (self-reported: see the module docstring)."""
    return run_check(Check(solution=program), limits, namespaces=namespaces, user=user)


def describe_isolation(isolation: dict) -> str:
    """One line for a results file: what the sandbox's isolation was (an Outcome's `isolation`)."""
    if not isolation:
        return "sandbox isolation unknown (no check reported it)"
    who = {None: "the caller's user", NOBODY: "nobody"}.get(isolation.get("user"), f"uid {isolation.get('user')}")
    text = (f"sandbox: verdicts from a separate harness process; filesystem: {isolation.get('filesystem')}; "
            f"/proc: {isolation.get('proc')}; network: {isolation.get('network')}; writable: "
            f"{isolation.get('writable')}; user: {who}")
    if isolation.get("filesystem") == "host":
        why = ("no namespaces (refused by the kernel, or turned off)" if not isolation.get("namespaces") else
               f"no filesystem of its own ({isolation.get('jail_error', 'refused')})")
        text = (f"sandbox with {why}: programs could read and write what {who} may (the benchmark's own tests "
                f"included) and see its processes; " + text)
    return text


def _frame(message: dict) -> bytes:
    data = json.dumps(message).encode()
    return len(data).to_bytes(8, "big") + data


def _json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


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


def check_many(checks: list[Check], limits: Limits = Limits(), *, workers: int | None = None) -> list[Outcome]:
    """run_check over many checks, a few at a time (each in its own sandbox), in order."""
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda c: run_check(c, limits), checks))
