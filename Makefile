# sdft: make demo | make test | make distill push | make bench
#
# Variables (override on the command line, e.g. make distill RECIPE=gsm8k BACKEND=tgi ENDPOINT=http://host:8080):
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
# torch first: pinned so pip does not pull a different (multi-GB) build; override to taste.
TORCH    ?= torch==2.13.0
RECIPE   ?= gsm8k
# The tiny default distills the shipped GSM8K sample (offline); name a Hub id or file for real runs.
SOURCE   ?= $(if $(and $(filter $(TINY),$(MODEL)),$(filter gsm8k,$(RECIPE))),sdft_data/samples/gsm8k_sample.jsonl)
BACKEND  ?= local
ENDPOINT ?=
TINY     := models/tiny
MODEL    ?= $(if $(filter local,$(BACKEND)),$(TINY),)
OUT      ?= runs/$(RECIPE)
LIMIT    ?=
ARGS     ?=
REPO     ?= my-org/$(RECIPE)-sdft
# Publishing target: a local folder by default; HUB_DIR= (empty) pushes to the Hub.
HUB_DIR  ?= hub
DATA     ?= $(REPO)@v1
BASE_MODEL ?= $(if $(MODEL),$(MODEL),$(TINY))
CKPT     ?= ckpt/$(RECIPE)
RESPONSES ?= sdft
# Evaluation: the seed model and each trained model or adapter (a train_manifest.json in $(CKPT), $(CKPT)-*
# or $(CKPT)/*: both arms), then the table.
SUITE    ?= paper
EVAL_DIR ?= eval/$(RECIPE)
# The tiny default reads the shipped made-up test rows (offline); real runs: DATA_DIR=the paper's data folder or empty (Hub).
DATA_DIR ?= $(if $(filter $(TINY),$(BASE_MODEL)),tests/fixtures/eval_data)
EVAL_ARGS ?= $(if $(filter $(TINY),$(BASE_MODEL)),--limit 4 --max-new-tokens 16)
EVAL_FLAGS = --suite $(SUITE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --quiet $(EVAL_ARGS)
# A push of the tiny model's noise has no accepted rewrite to publish.
PUSH_ARGS ?= $(if $(filter $(TINY),$(MODEL)),--allow-no-rewrites)
# The paper's data folder (a clone of github sail-sg/sdft beside this one), for two benchmarks.
PAPER_DATA ?= ../sdft/data

.PHONY: setup demo test distill check diff push train eval compare bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(TINY)/config.json: | setup
	$(BIN)/sdft-data tiny-model $(TINY)

# The main job on the built-in tiny default: distill a 12-row GSM8K-style sample
# with a tiny random model, check it, diff it, and publish v1 to a local hub folder.
demo: setup $(TINY)/config.json
	$(BIN)/sdft-data distill --recipe gsm8k --source sdft_data/samples/gsm8k_sample.jsonl \
		--model $(TINY) --out runs/demo --max-new-tokens 48
	$(BIN)/sdft-data diff runs/demo
	$(BIN)/sdft-data push runs/demo --repo demo/gsm8k-sdft --local $(HUB_DIR)
	$(BIN)/sdft-train train --data demo/gsm8k-sdft@v1 --local $(HUB_DIR) --model $(TINY) --out runs/demo-ckpt --max-steps 2
	@echo
	@echo "demo done:"
	@echo "  run directory     runs/demo  (manifest.json, generations/, distilled.parquet)"
	@echo "  diff report       runs/demo/report/report.md"
	@echo "  published dataset $(HUB_DIR)/demo/gsm8k-sdft  (sdft-data versions demo/gsm8k-sdft --local $(HUB_DIR))"
	@echo "  LoRA adapter      runs/demo-ckpt  (trained 2 steps on demo/gsm8k-sdft@v1)"

test: setup
	$(BIN)/python -m pytest -q

distill: setup $(if $(filter $(TINY),$(MODEL)),$(TINY)/config.json)
	$(BIN)/sdft-data distill --recipe $(RECIPE) $(if $(SOURCE),--source $(SOURCE)) --backend $(BACKEND) \
		$(foreach e,$(ENDPOINT),--endpoint $(e)) $(if $(MODEL),--model $(MODEL)) --out $(OUT) \
		$(if $(LIMIT),--limit $(LIMIT)) $(ARGS)
	@# The chain (make distill train eval) trains on the published version: publish v1 to a local hub folder once.
	$(if $(HUB_DIR),test -d $(HUB_DIR)/$(REPO) || $(BIN)/sdft-data push $(OUT) --repo $(REPO) --local $(HUB_DIR) $(PUSH_ARGS))

check: setup
	$(BIN)/sdft-data check $(OUT)

diff: setup
	$(BIN)/sdft-data diff $(OUT)

push: setup
	$(BIN)/sdft-data push $(OUT) --repo $(REPO) $(if $(HUB_DIR),--local $(HUB_DIR))

# One arm per run, from the same published rows: RESPONSES=sdft (the distilled responses) or
# RESPONSES=original (vanilla fine-tuning); each goes to $(CKPT)-$(RESPONSES).
train: setup $(if $(filter $(TINY),$(BASE_MODEL)),$(TINY)/config.json)
	$(BIN)/sdft-train train --data $(DATA) $(if $(HUB_DIR),--local $(HUB_DIR)) --model $(BASE_MODEL) \
		--responses $(RESPONSES) --out $(CKPT)-$(RESPONSES) $(ARGS)

eval: setup $(if $(filter $(TINY),$(BASE_MODEL)),$(TINY)/config.json)
	$(BIN)/sdft-train eval --model $(BASE_MODEL) --backend $(BACKEND) $(foreach e,$(ENDPOINT),--endpoint $(e)) \
		$(EVAL_FLAGS) --out $(EVAL_DIR)/seed
	@for ck in $(CKPT) $(CKPT)-* $(CKPT)/*; do \
		test -f $$ck/train_manifest.json || continue; \
		if test -f $$ck/adapter_config.json; then model="--model $(BASE_MODEL) --adapter $$ck"; else model="--model $$ck"; fi; \
		echo "$(BIN)/sdft-train eval $$model ... --out $(EVAL_DIR)/$$(basename $$ck)"; \
		$(BIN)/sdft-train eval $$model $(EVAL_FLAGS) --seed-results $(EVAL_DIR)/seed --out $(EVAL_DIR)/$$(basename $$ck) \
			|| exit 1; \
	done
	$(MAKE) --no-print-directory compare

compare: setup
	$(BIN)/sdft-train compare $$(dirname $(EVAL_DIR)/*/results.json) --seed $(EVAL_DIR)/seed --out $(EVAL_DIR)/table
	@echo "table: $(EVAL_DIR)/table/table.md (.tex, .csv, .png)"

bench: setup
	$(BIN)/python benchmarks/bench_local_generate.py --data $(PAPER_DATA)
	$(BIN)/python benchmarks/bench_check_diff.py --data $(PAPER_DATA)
	$(BIN)/python benchmarks/bench_push.py
	$(BIN)/python benchmarks/bench_endpoint.py
	$(BIN)/python benchmarks/bench_train.py --data $(PAPER_DATA)

clean:
	rm -rf runs/demo runs/demo-ckpt $(HUB_DIR)/demo
