"""`sdft-train train` in a child process that SIGKILLs itself at a checkpoint: after saving it, or half way through
saving it (the weights and the optimizer written, the RNG state and trainer_state.json not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_AFTER = """
import os, signal, sys
from transformers import Trainer
save = Trainer._save_checkpoint
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if self.state.global_step >= {step}:
        os.kill(os.getpid(), signal.SIGKILL)
Trainer._save_checkpoint = save_then_die
from sdft_train.cli import main
main(sys.argv[1:])
"""

_DURING = """
import os, signal, sys
from transformers import Trainer
save = Trainer._save_rng_state
def die_while_saving(self, *args, **kwargs):
    if self.state.global_step >= {step}:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, *args, **kwargs)
Trainer._save_rng_state = die_while_saving
from sdft_train.cli import main
main(sys.argv[1:])
"""


def train_killed(args: list, out: Path, *, step: int, during: bool = False) -> subprocess.CompletedProcess:
    """`sdft-train train ARGS --out OUT --quiet`, killed at checkpoint `step` (after its save, or `during` it)."""
    script = (_DURING if during else _AFTER).format(step=step)
    return subprocess.run([sys.executable, "-c", script, "train", *map(str, args), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
