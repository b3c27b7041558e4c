#!/bin/bash
# EMR bootstrap action: install fruits_kedro and its Python dependencies on every node.
#   Args: $1 = s3:// URI of the project wheel (uploaded by python -m fruits_kedro.cloud.emr)
#
# EMR 7.x (Amazon Linux 2023) ships Python 3.9, which Kedro 1.x and TensorFlow 2.21 no longer
# support, so Python 3.11 is installed beside it and Spark is pointed at it
# (spark.pyspark.python, set by the step). PySpark itself is NOT pip-installed: EMR provides
# Spark 3.5 and puts its own pyspark on PYTHONPATH; a pip copy would shadow it with another
# version. The pins below keep the Python side compatible with Spark 3.5's Arrow/pandas code.
set -euo pipefail

WHEEL_URI="${1:?usage: bootstrap.sh s3://bucket/key/fruits_kedro-<version>-py3-none-any.whl}"
PYTHON=python3.11
WORK_DIR="$(mktemp -d /tmp/fruits_kedro_bootstrap.XXXXXX)"

echo "fruits_kedro bootstrap: installing ${PYTHON} and ${WHEEL_URI}"
sudo dnf install -y -q "${PYTHON}" "${PYTHON}-pip" "${PYTHON}-devel"

WHEEL="${WORK_DIR}/$(basename "${WHEEL_URI}")"
aws s3 cp --only-show-errors "${WHEEL_URI}" "${WHEEL}"

# The wheel's own requirements, minus pyspark, and with kedro-datasets' extras that would pull
# pyspark replaced by the pieces actually used (s3fs, JSON and matplotlib datasets).
cat > "${WORK_DIR}/constraints-spark35.txt" <<'PINS'
# Spark 3.5's pandas UDF / Arrow code is tested with pandas 2.x up to 2.2 and NumPy < 2.
numpy>=1.26,<2.0
pandas>=2.1,<2.3
pyarrow>=15,<18
PINS
"${PYTHON}" - "${WHEEL}" > "${WORK_DIR}/requirements.txt" <<'PY'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
for line in wheel.read(metadata).decode().splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    requirement = line.split(":", 1)[1].strip()
    if "extra ==" in requirement:  # dev/test extras are not installed on the cluster
        continue
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
    if name == "pyspark":
        continue  # provided by EMR
    if name == "kedro-datasets":
        requirement = re.sub(r"\[[^\]]*\]", "[json-jsondataset,matplotlib-matplotlibdataset]", requirement)
        print("s3fs>=2024.2")
    print(requirement)
PY
echo "fruits_kedro bootstrap: requirements"; cat "${WORK_DIR}/requirements.txt"

sudo "${PYTHON}" -m pip install --quiet --upgrade pip
sudo "${PYTHON}" -m pip install --quiet -r "${WORK_DIR}/requirements.txt" -c "${WORK_DIR}/constraints-spark35.txt"
sudo "${PYTHON}" -m pip install --quiet --no-deps "${WHEEL}"

# Fail the bootstrap (and the cluster start) now, not an hour into a step, if anything is off.
"${PYTHON}" -c "import fruits_kedro.datasets, kedro, tensorflow, s3fs, pyarrow; print('fruits_kedro bootstrap: OK')"
rm -rf "${WORK_DIR}"
