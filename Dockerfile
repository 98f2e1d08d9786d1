# digitserve for a GPU host: docker build -t digitserve . && docker run --gpus all -p 127.0.0.1:8000:8000 digitserve
# The pinned torch/torchvision wheels from PyPI are the CUDA builds (they carry their CUDA libraries), so
# this plain Python base serves on the GPU when the NVIDIA container toolkit exposes one, and on CPU otherwise.
FROM python:3.11-slim-bookworm

# Two glibc malloc arenas instead of up to 8 per core: ~80-110 MiB less resident memory once warm, no slower
# (benchmarks/bench_soak.py; docs/benchmarks.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2 \
    DIGITSERVE_DEVICE=auto

WORKDIR /app

# Dependencies before code, so code changes do not reinstall torch. pyproject.toml is the one list.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['train']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Code and the shipped model (models/default/).
COPY models/ models/
COPY training/ training/
COPY service/ service/
COPY configs/ configs/

RUN groupadd --gid 10001 digitserve \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin digitserve
USER 10001:10001

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

# Graceful shutdown (25 s) stays inside compose's stop_grace_period (30 s). The service logs each request
# itself (`service.access`: request ID, route, status, ms), so uvicorn's own access log is off.
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "25", "--no-access-log"]
