# Two commands for a new user (see README.md):
#   make demo   set up on first use, then run the demo on the toy nuScenes world
#   make test   set up on first use, then run the linter and the test suite
#   make lint   ruff (ruff.toml): lint and format check
#   make fiftyone  the optional FiftyOne install (tools/export_fiftyone.py)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Re-run set-up whenever what it installs changes.
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements/runtime.txt requirements/dev.txt setup.py tools/build_mmcv.sh | sha1sum | cut -c1-12)
DATA := data/toy_nuscenes# the toy configs' data_root
WORK := work_dirs# the *_toy configs read their mining outputs from work_dirs/mining_toy
PYTEST_ARGS ?=

.PHONY: setup fiftyone browser demo test lint benchmark clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP):
	@echo ">>> Setting up $(VENV) (first run: torch, the OpenMMLab stack, and an mmcv build)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/dev.txt
	bash tools/build_mmcv.sh $(VENV)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.setup-*
	touch $@

# FiftyOne and its database binary, into the same venv (no pin of ours moves).
FIFTYONE_STAMP := $(VENV)/.fiftyone-$(shell cat requirements/fiftyone.txt | sha1sum | cut -c1-12)
fiftyone: setup $(FIFTYONE_STAMP)

$(FIFTYONE_STAMP): | $(SETUP_STAMP)
	@echo ">>> Installing FiftyOne with its database (requirements/fiftyone.txt)"
	$(PY) -m pip install -q -r requirements/fiftyone.txt
	rm -f $(VENV)/.fiftyone-*
	touch $@

$(DATA)/nuscenes_infos_val.pkl: | $(SETUP_STAMP)
	$(PY) tools/make_toy_nuscenes.py --out $(DATA) --overwrite

TOY_MODELS := data/toy_models# configs/mining/toy.py's toy_models

demo: setup $(DATA)/nuscenes_infos_val.pkl
	$(PY) tools/make_toy_models.py --out $(TOY_MODELS)
	$(PY) tools/mine.py configs/mining/toy.py --data-root $(DATA) --ann-file nuscenes_infos_train.pkl \
		--work-dir $(WORK)/mining_toy
	$(PY) tools/benchmark.py --world toy --arms full mined20 --seeds 0 --work-dir $(WORK)/demo

# The evidence study (docs/benchmarks.md): the benchmark world, mining models trained on a
# separate world, then every arm x seed epoch-matched (BENCH_EPOCHS passes over its own train
# set, CBGS included), and BENCH_ITER_ARMS again for as many iterations as full trained.
# Resumes where a killed run stopped.
BENCH_DATA := data/toy_benchmark
BENCH_ARMS ?= full random20 mined20 mined20_annotations coreset20
BENCH_ITER_ARMS ?= random20 mined20
BENCH_SEEDS ?= 0 1 2
BENCH_EPOCHS ?= 1
benchmark: setup
	test -f $(BENCH_DATA)/nuscenes_infos_val.pkl || $(PY) tools/make_toy_nuscenes.py --preset benchmark --out $(BENCH_DATA)
	$(PY) tools/train_toy_mining_models.py --out data/toy_models_trained --eval-data-root $(BENCH_DATA)
	$(PY) tools/benchmark.py --world toy --data-root $(BENCH_DATA) --mining-config configs/mining/toy_trained.py \
		--mining-dir $(WORK)/benchmark_mining --arms $(BENCH_ARMS) --seeds $(BENCH_SEEDS) --epochs $(BENCH_EPOCHS) \
		--iteration-matched $(BENCH_ITER_ARMS) --work-dir $(WORK)/benchmark_toy

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The report tests render pages in a real browser: Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ echo ">>> Installing Debian's chromium for the report tests"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup lint browser fiftyone
	$(PY) -m pytest $(PYTEST_ARGS) tests

clean:
	rm -rf $(WORK) $(DATA) $(DATA).partial
