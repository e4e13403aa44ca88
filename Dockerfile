# sevis dashboard. Build: docker build -t sevis .   Run: docker run -p 8501:8501 sevis
# Pretrained weights live in the /weights volume (downloaded there once, or filled by
# `sevis weights fetch` on a connected machine and mounted); hub caches in /cache; saved
# runs the dashboard may open by path in /data (mount it read-only).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# CPU-only torch and torchvision by default. For a GPU image, or where this index
# cannot be reached: --build-arg TORCH_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_TIMEOUT=120 \
    PIP_RETRIES=10 \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    SEVIS_WEIGHTS_DIR=/weights \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501

# What one user's file may cost (README, "Running it for a group"); override with -e.
ENV SEVIS_SERVER_DIRS=/data \
    SEVIS_MAX_CHECKPOINT_MB=1024 \
    SEVIS_PARSE_TIMEOUT_S=120 \
    SEVIS_PARSE_MEMORY_MB=4096 \
    SEVIS_PARSE_NICE=10 \
    SEVIS_ZIP_MAX_FILES=20000 \
    SEVIS_ZIP_MAX_MEMBER_MB=64 \
    SEVIS_ZIP_MAX_MB=1024 \
    SEVIS_MAX_IMAGE_MB=64 \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=512

WORKDIR /app
COPY requirements.txt ./
# The torch pair first, from TORCH_INDEX_URL; the rest then finds it installed.
RUN grep -E '^(torch|torchvision)==' requirements.txt > /tmp/torch.txt \
    && pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt \
    && pip install -r requirements.txt \
    && rm /tmp/torch.txt

COPY pyproject.toml setup.py README.md LICENSE app.py ./
COPY .streamlit ./.streamlit
COPY sevis ./sevis
COPY assets ./assets
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 sevis \
    && mkdir -p /cache /weights /data \
    && chown sevis:sevis /cache /weights

USER 10001:10001
VOLUME ["/cache", "/weights"]
EXPOSE 8501
# No curl in the slim image: Python asks Streamlit's health endpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('STREAMLIT_SERVER_PORT', '8501'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/_stcore/health', timeout=4).read() != b'ok')"]
CMD ["streamlit", "run", "app.py"]
