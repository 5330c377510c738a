# Two commands for a new user (see README.md):
#   make demo   set up on first use, then run the demo on the toy nuScenes world
#   make test   set up on first use, then run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Re-run set-up whenever what it installs changes.
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements/runtime.txt setup.py tools/build_mmcv.sh | sha1sum | cut -c1-12)
DATA := data/toy_nuscenes# the toy configs' data_root
WORK := work_dirs# the *_toy configs read their mining outputs from work_dirs/mining_toy
PYTEST_ARGS ?=

.PHONY: setup demo test clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP):
	@echo ">>> Setting up $(VENV) (first run: torch, the OpenMMLab stack, and an mmcv build)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel
	$(PY) -m pip install -q -r requirements/runtime.txt
	bash tools/build_mmcv.sh $(VENV)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.setup-*
	touch $@

$(DATA)/nuscenes_infos_val.pkl: | $(SETUP_STAMP)
	$(PY) tools/make_toy_nuscenes.py --out $(DATA) --overwrite

TOY_MODELS := data/toy_models# configs/mining/toy.py's toy_models

demo: setup $(DATA)/nuscenes_infos_val.pkl
	$(PY) tools/make_toy_models.py --out $(TOY_MODELS)
	$(PY) tools/mine.py configs/mining/toy.py --data-root $(DATA) --ann-file nuscenes_infos_train.pkl \
		--work-dir $(WORK)/mining_toy
	$(PY) tools/train.py configs/centerpoint_full_toy.py --work-dir $(WORK)/centerpoint_full_toy
	$(PY) tools/train.py configs/centerpoint_mined20_toy.py --work-dir $(WORK)/centerpoint_mined20_toy

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

clean:
	rm -rf $(WORK) $(DATA) $(DATA).partial
