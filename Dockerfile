# mte in a container: `docker build -t mte .` then `docker run --rm --shm-size=2g -v "$PWD:/work" mte sweep --preset quick`.
# The Ray dashboard (published on the host's loopback only; inside the container it must bind 0.0.0.0):
#   docker run --rm --shm-size=2g -p 127.0.0.1:8265:8265 -v "$PWD:/work" mte sweep --preset quick --dashboard-host 0.0.0.0
# The MLflow UI likewise: docker run --rm -p 127.0.0.1:5000:5000 -v "$PWD:/work" mte ui --host 0.0.0.0
# CPU by default. GPUs: build with a CUDA wheel index of the same torch version, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t mte-gpu .
# and run with `docker run --gpus all ... mte sweep --gpus-per-trial 0.5` (see sweeps/README.md).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false

# TCMalloc, which the `mte` command runs under (mte/launch.py: faster and leaner than glibc's malloc for CPU training).
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 && rm -rf /var/lib/apt/lists/*

# torch first, from its own index, so installing the project does not pull the default (CUDA) wheel.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/mte
COPY pyproject.toml README.md ./
COPY mte ./mte
COPY sweeps ./sweeps
COPY tracking ./tracking
RUN pip install .

# Results (mte-store/, mlflow.db, mlartifacts/, mte-report/) land in the working directory: mount one here.
WORKDIR /work
ENTRYPOINT ["mte"]
CMD ["--help"]
