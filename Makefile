# Two commands do everything on a fresh machine:
#   make demo   — the demo city (S3 server, RTSP camera, detection, cases, API) on embedded defaults
#   make test   — installs what is missing (Debian packages, the virtualenv) and runs every check
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the real components need: ffmpeg publishes RTP, GStreamer serves RTSP, PostgreSQL is the
# case store's second test database, chromium runs the review page's browser tests.
APT_PACKAGES := ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	postgresql chromium

.PHONY: demo test check bench bench-quick system-deps venv train-venv clean

demo: system-deps venv
	$(BIN)/citywatch demo

# Ultralytics' settings and any weights it writes stay under var/, and it never reaches for the network.
ULTRALYTICS_ENV := YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=$(CURDIR)/var/ultralytics

test: system-deps venv train-venv
	$(MAKE) --no-print-directory check
	$(ULTRALYTICS_ENV) $(BIN)/pytest
	# Parity with ultralytics and the training pipeline, in the training venv (torch stays out of .venv).
	$(ULTRALYTICS_ENV) $(TRAIN_BIN)/pytest -m ultralytics
	$(MAKE) --no-print-directory bench-quick

# Benchmarks: ratios against baselines measured in the same run (bench/README.md). Quick runs write var/bench-quick/.
# The detector benchmark runs in the training venv: its baseline includes ultralytics' own predict loop.
BENCHMARKS := bench/frame_path.py bench/cameras.py bench/schedule_sim.py bench/case_api.py bench/serve_memory.py

bench: system-deps venv train-venv
	$(ULTRALYTICS_ENV) $(TRAIN_BIN)/python bench/detector.py
	for script in $(BENCHMARKS); do $(BIN)/python $$script || exit 1; done

bench-quick: venv train-venv
	$(ULTRALYTICS_ENV) $(TRAIN_BIN)/python bench/detector.py --quick
	for script in $(BENCHMARKS); do $(BIN)/python $$script --quick || exit 1; done

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy vision models pipelines cases serving datasets stack bench
	$(BIN)/lint-imports

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(STAMP)

# Strict editable installs link each file: re-install when a package file is added or changed.
PACKAGE_FILES := $(wildcard vision/*.py models/*.py models/default/* pipelines/*.py pipelines/config/*.py \
	pipelines/templates/* cases/*.py cases/*.txt cases/migrations/versions/*.py serving/*.py serving/demo/* serving/templates/* \
	serving/static/* datasets/*.py datasets/*/*.py stack/*.py)

$(STAMP): pyproject.toml $(PACKAGE_FILES)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "installing citywatch and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/pip install --upgrade pip && \
	   $(BIN)/pip install -e '.[dev]' --config-settings editable_mode=strict; } > $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; echo "pip install failed: see $(VENV)/install.log"; exit 1; }
	touch $(STAMP)

# The training venv: the train extra pulls ultralytics and CUDA torch (~6 GB); serving never needs it.
TRAIN_VENV := .venv-train
TRAIN_BIN := $(TRAIN_VENV)/bin
TRAIN_STAMP := $(TRAIN_VENV)/.installed

train-venv: $(TRAIN_STAMP)

$(TRAIN_STAMP): pyproject.toml $(PACKAGE_FILES)
	test -d $(TRAIN_VENV) || $(PYTHON) -m venv $(TRAIN_VENV)
	@echo "installing citywatch with the train extra into $(TRAIN_VENV) (log: $(TRAIN_VENV)/install.log)"
	@{ $(TRAIN_BIN)/pip install --upgrade pip && \
	   $(TRAIN_BIN)/pip install -e '.[train,dev]' --config-settings editable_mode=strict; } > $(TRAIN_VENV)/install.log 2>&1 \
	   || { tail -n 30 $(TRAIN_VENV)/install.log; echo "pip install failed: see $(TRAIN_VENV)/install.log"; exit 1; }
	touch $(TRAIN_STAMP)

clean:
	rm -rf $(VENV) $(TRAIN_VENV) var build *.egg-info
