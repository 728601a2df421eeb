# syntax=docker/dockerfile:1
# The operator image: `modelrollout run` on python:3.11-slim, with only the runtime
# dependencies of pyproject.toml (no sandbox or dev extras), as a non-root user.
# tests/test_image.py installs the same set in a clean venv and starts the command.
#
#   docker build -t modelrollout:0.1.0 .

FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY operator ./operator
# Wheels of the locked runtime dependencies (every hash checked) and of the package alone,
# so the image gets exactly the audited set and no build tools.
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# git fetches the rollouts' repositories; ssh fetches over SSH and ssh-keygen checks SSH
# commit signatures (`git verify-commit`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
# The wheels are mounted, not copied, so no layer keeps them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels modelrollout
# The root filesystem is read-only in the chart: /tmp (an emptyDir there) is the only
# writable place, for the git cache and any client that wants a home directory.
ENV HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["modelrollout"]
CMD ["run"]
