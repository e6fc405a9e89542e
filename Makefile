# The README's two commands: `make demo` and `make test`. Both install what
# they need (a .venv, and Debian packages when run as root) and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= runs/demo
APT_PACKAGES := qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi clang libclang-rt-14-dev ser2net
# Re-install only when the dependency list changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test benchmarks reliability install system-packages clean agent-venv-check pi-emulated-check mlperf-tiny cifar-ee

demo: install
	$(BIN)/tinyexit demo --out $(OUT) $(if $(FORCE),--force,)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Long runs, not tests: the main job, then the long fault and fuzz runs on its artifacts.
benchmarks: demo reliability

reliability: install
	test -d $(OUT)/export || $(MAKE) demo
	$(BIN)/tinyexit reliability faults $(OUT) --target agent --target qemu --sweep --fec off,auto --doc docs/reliability.md
	$(BIN)/tinyexit reliability fuzz-decoder --inputs 1000000
	$(BIN)/tinyexit reliability fuzz-c --seconds 600 --target protocol_stub
	$(BIN)/tinyexit reliability fuzz-c --seconds 600

# Not a test: two fresh venvs with only `pip install '.[agent]'` run the agent and the bench on a copied bundle.
agent-venv-check: install
	bash tests/core/agent_venv_check.sh $(BUNDLE)

# Early exit at 32x32x3: resnet8-ee on generated CIFAR-format data, exported and benched on both targets.
cifar-ee: install
	$(BIN)/python examples/make_cifar_format.py build/cifar
	$(BIN)/tinyexit train early-exit --arch resnet8-ee --dataset cifar10 --data-dir build/cifar --out build/cifar-run --epochs 2 --force
	$(BIN)/tinyexit export build/cifar-run
	$(BIN)/tinyexit bench build/cifar-run --target agent --repeats 3
	$(BIN)/tinyexit bench build/cifar-run --target qemu --limit 40
	$(BIN)/tinyexit report build/cifar-run

# The four MLPerf Tiny reference architectures imported, built and profiled under QEMU: one table.
mlperf-tiny: install
	$(BIN)/tinyexit bench-suite mlperf-tiny --out runs/mlperf-tiny

# The agent on an emulated Raspberry Pi OS userland (arm64 or PI_ARCH=armhf): needs root, debootstrap,
# qemu-user-static and a few minutes; not part of the test suite (docs/raspberry-pi.md).
pi-emulated-check: install
	test -d $(OUT)/export || $(MAKE) demo
	PI_ARCH=$(or $(PI_ARCH),arm64) bash tools/pi/emulated_pi_check.sh $(OUT) $(or $(MODEL),classifier)

install: system-packages $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
	rm -f $(VENV)/.installed-* && touch $@

# Debian packages for the microcontroller target and the C fuzzers. Installed
# only when missing and only as root; otherwise print the command to run.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing) >/dev/null || \
	    echo "warning: apt-get could not install$$missing; the QEMU target will be skipped"; \
	  else echo "note: not root; to enable the microcontroller target run: sudo apt-get install -y$$missing"; fi; \
	fi

clean:
	rm -rf build runs
