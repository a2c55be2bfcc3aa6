"""The HumanEval sandbox: each hostile snippet is contained, scored as a failure, and leaves nothing behind."""

import glob
import os
import socket
import threading
import time

import pytest

from sdft_train.sandbox import Limits, humaneval_program, run_python

LIMITS = Limits(wall_seconds=2.0, cpu_seconds=2, memory_mb=512)


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


def _run(program, limits=LIMITS):
    before = _leftovers()
    t0 = time.monotonic()
    outcome = run_python(program, limits)
    took = time.monotonic() - t0
    assert took < limits.wall_seconds + 4, f"the sandbox took {took:.1f}s"
    time.sleep(0.05)
    folders, procs = _leftovers()
    assert folders <= before[0], "the sandbox left its folder behind"
    assert procs <= before[1], "the sandbox left a process behind"
    return outcome


def test_a_correct_program_passes_and_a_wrong_one_fails():
    ok = _run("from typing import List\nimport math\ndef f(xs: List[int]):\n    return sum(xs)\nassert f([1, 2]) == 3\n")
    assert ok.passed and ok.status == "passed"
    bad = _run("assert 1 + 1 == 3\n")
    assert not bad.passed and bad.status == "failed: AssertionError"


def test_human_evals_check_program_layout():
    problem = {"prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"}
    assert _run(humaneval_program(problem, "    return a + b\n")).passed
    assert not _run(humaneval_program(problem, "    return a - b\n")).passed


@pytest.mark.parametrize(
    "name, program, status",
    [
        ("infinite loop", "while True:\n    pass\n", "timed out"),
        ("memory bomb", "x = bytearray(64 * 1024 ** 3)\n", "failed: MemoryError"),
        ("growing memory", "x = []\nwhile True:\n    x.append(' ' * 2 ** 20)\n", None),
        ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", None),
        ("sys.exit(0)", "import sys\nsys.exit(0)\n", "failed: SystemExit: 0"),
        ("os._exit(0)", "import os\nos._exit(0)\n", "failed: exited before the end of the program"),
        ("escaping child", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nos._exit(0)\n", None),
        ("write outside", "open('/tmp/sdft-sandbox-escape.txt', 'w').write('x')\n", "failed"),
        ("write in the repo", f"open({os.path.abspath('sdft-sandbox-escape.txt')!r}, 'w').write('x')\n", "failed"),
    ],
)
def test_hostile_programs_are_contained(name, program, status):
    outcome = _run(program)
    assert not outcome.passed, name
    if status:
        assert outcome.status.startswith(status), outcome.status
    assert not os.path.exists("/tmp/sdft-sandbox-escape.txt")
    assert not os.path.exists("sdft-sandbox-escape.txt")


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
