#!/bin/sh
# Entry point of the Homeward image: one image, five services.
#
#   docker run homeward placements        run a service (python -m homeward.placements)
#   docker run -e HOMEWARD_SERVICE=budget homeward
#                                         the same, the service named by the environment
#   docker run homeward init              create the Kafka topics (deploy/init/init_topics.py)
#   docker run homeward homeward --help   anything else runs as a command (the partner CLI...)
set -e

if [ "$#" -eq 0 ]; then
  set -- "${HOMEWARD_SERVICE:-}"
fi

case "$1" in
  ingress | referrals | placements | budget | notifications)
    service="$1"
    shift
    export HOMEWARD_SERVICE="$service"
    exec python -m "homeward.$service" "$@"
    ;;
  init)
    shift
    exec python /app/deploy/init/init_topics.py "$@"
    ;;
  "")
    echo "homeward image: name a service (ingress, referrals, placements, budget, notifications or init)" >&2
    echo "  as the first argument or in HOMEWARD_SERVICE" >&2
    exit 64
    ;;
  *)
    exec "$@"
    ;;
esac
