# The README's two commands. Each first makes the virtual environment $(VENV) from the
# requirements files it needs, when the venv is missing or a file's sha256 differs from the
# stamp the last install wrote; otherwise it goes straight to the run.
#
#   make quickstart                      train the offline quick start into $(WORKDIR)
#   make test                            run the test suite
#   make test ARGS='-m "not slow"'       ARGS go to pytest (to launch.train for quickstart)
#
# PY=<python> runs with that interpreter's environment as it is, with no venv step. These
# variables are set on the command line only; the environment does not change them.

SHELL := /bin/bash
PYTHON = python3.11
VENV = .venv
PY = $(VENV)/bin/python
WORKDIR = workdirs/quickstart
ARGS =

REQUIREMENTS := requirements.txt
TEST_REQUIREMENTS := $(REQUIREMENTS) $(wildcard requirements-test.txt)
STAMP := $(VENV)/requirements.sha256

# $(call venv,FILES): make $(VENV) hold FILES unless its stamp has each file's current hash.
# A changed requirements.txt starts a venv made here afresh (nothing left over from the old
# pins); a venv without a stamp is installed into as it is; test requirements go on top.
# After the install, oneDNN's bf16 convolutions are built (alexnet_jax/nn/onednn.py);
# without them a bf16 model on a CPU computes in f32 through XLA, which is all that is lost.
NO_ONEDNN := oneDNN's bf16 kernels not built: bf16 on a CPU computes in f32 (alexnet_jax/nn/onednn.py)

ifeq ($(PY),$(VENV)/bin/python)
define venv
	@set -e; want="$$(sha256sum $(1))"; \
	if [ -f $(STAMP) ] && ! grep -vqxFf $(STAMP) <<< "$$want"; then exit 0; fi; \
	if [ -f $(STAMP) ] && ! grep -qxF "$$(sha256sum $(REQUIREMENTS))" $(STAMP); then \
	  rm -rf $(VENV); fi; \
	echo "Installing $(1) into $(VENV) (a few minutes, once)"; \
	[ -d $(VENV) ] || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip; \
	$(PY) -m pip install --quiet $(addprefix -r ,$(1)); \
	$(PY) -m alexnet_jax.nn.onednn > /dev/null || echo "$(NO_ONEDNN)"; \
	echo "$$want" > $(STAMP)
endef
TENSORBOARD := $(VENV)/bin/tensorboard
else
TENSORBOARD := tensorboard
endif

.PHONY: quickstart test

quickstart:
	$(call venv,$(REQUIREMENTS))
	$(PY) -m launch.train --config=experiments/quickstart.py --workdir=$(WORKDIR) $(ARGS)
	@echo "Quick start workdir: $(abspath $(WORKDIR))"; \
	echo "  checkpoints: $(abspath $(WORKDIR))/checkpoints"; \
	echo "  TensorBoard logs: $(abspath $(WORKDIR)) ($(TENSORBOARD) --logdir $(WORKDIR))"

test:
	$(call venv,$(TEST_REQUIREMENTS))
	@$(PY) -m pytest -q $(ARGS) || { s=$$?; [ $$s -ne 5 ] || \
	  echo "pytest collected no tests (exit 5): ARGS selects nothing" >&2; exit $$s; }
