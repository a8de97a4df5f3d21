#!/bin/sh
# Container entry point: like other Matrix bridges, set up /data on first start.
set -e
cd /data
if [ ! -f config.yaml ]; then
    cp /opt/sip-bridge/bridge/example-config.yaml config.yaml
    echo "Wrote /data/config.yaml. Edit it (homeserver, permissions, SIP; listen on 0.0.0.0"
    echo "inside a container), then start the container again."
    exit 0
fi
if [ ! -f registration.yaml ]; then
    python -m bridge -g -c config.yaml -r registration.yaml
    echo "Give /data/registration.yaml to your homeserver, restart it, then start this again."
    exit 0
fi
exec python -m bridge -c config.yaml
