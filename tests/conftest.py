"""Shared fixtures: a tiny model built once per session, small fixture datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never reach the network; loopback servers stand in for the Hub and engines.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama chat model saved with save_pretrained (built once)."""
    from sdft_data.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_llama2_dir(tmp_path_factory) -> Path:
    """The tiny model with Llama-2-chat's template: a stand-in for a Llama-2 model (the paper format's llama2 layout)."""
    from sdft_data.tiny import LLAMA2_CHAT_TEMPLATE, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama2"), chat_template=LLAMA2_CHAT_TEMPLATE)


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A box holds 12 eggs. How many eggs are in 5 boxes?",
     "answer": "5 boxes hold 5 * 12 = <<5*12=60>>60 eggs.\n#### 60"},
    {"question": "Sam reads 20 pages a day for 3 days. How many pages does he read?",
     "answer": "He reads 20 * 3 = <<20*3=60>>60 pages.\n#### 60"},
    {"question": "A shop sells 1,250 pens on Monday and 750 on Tuesday. How many in total?",
     "answer": "1250 + 750 = <<1250+750=2000>>2000 pens.\n#### 2,000"},
    {"question": "Ana had 10 dollars and spent 4. How much is left?",
     "answer": "10 - 4 = <<10-4=6>>6 dollars.\n#### 6"},
    {"question": "There are 7 days in a week. How many days are in 3 weeks?",
     "answer": "7 * 3 = <<7*3=21>>21 days.\n#### 21"},
]

ALPACA_ROWS = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning.",
     "output": "Bonjour."},
    {"instruction": "Rewrite the sentence using gender-neutral language.", "input": "A fireman saved the cat.",
     "output": "A firefighter saved the cat."},
    {"instruction": "Name a primary color.", "input": "", "output": "Red."},
]


@pytest.fixture
def gsm8k_file(tmp_path) -> Path:
    """A small GSM8K-shaped JSON file (raw Hub format: <<calc>> and ####)."""
    path = tmp_path / "gsm8k_small.json"
    path.write_text(json.dumps(GSM8K_ROWS))
    return path


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    path = tmp_path / "alpaca_small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ALPACA_ROWS))
    return path
