# SIP ⇄ Matrix bridge. First start writes /data/config.yaml; the second, after you edit it,
# writes /data/registration.yaml for your homeserver; from then on it runs the bridge.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 1337 --home-dir /data --shell /usr/sbin/nologin bridge \
    && mkdir -p /data && chown bridge /data

WORKDIR /opt/sip-bridge
COPY pyproject.toml README.md alembic.ini ./
COPY bridge ./bridge
COPY alembic ./alembic
COPY docker-run.sh ./
RUN pip install -e . && chmod 0755 docker-run.sh

USER bridge
VOLUME /data
WORKDIR /data
# appservice, SIP (UDP and TCP), metrics
EXPOSE 29360 5060/udp 5060/tcp 9400
CMD ["/opt/sip-bridge/docker-run.sh"]
