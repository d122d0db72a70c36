#!/usr/bin/env bash
# CI-only stand-ins for the official Kafka, PostgreSQL and MailDev images that
# docker-compose.yml and the testcontainers fixture name, for machines that reach no container
# registry (containers/README.md). Each is made from the same upstream artifacts the native
# stack uses: Kafka's jars from Maven Central, PostgreSQL 15 from Debian, MailDev from npm.
# Cached: an image is rebuilt only when its definition changes (the stamp label), and the
# jars and node_modules are kept in .local/containers/.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/base-image.sh" standins

build() {  # build NAME IMAGE CONTEXT: containers/NAME/* plus what CONTEXT already holds
  local name="$1" image="$2" context="$3" stamp
  cp -a "$ROOT/containers/$name/." "$context/"
  stamp="$( (cd "$context" && find . -type f ! -path './node_modules/*' ! -path './libs/*' | sort | xargs sha256sum;
             podman image inspect --format '{{.Id}}' "$STANDIN_BASE") | sha256sum | cut -c1-16)"
  if [ "$(podman image inspect --format '{{index .Labels "org.homeward.stamp"}}' "$image" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  say "building the stand-in $image"
  podman build --quiet --format docker --build-arg "STANDIN_BASE=$STANDIN_BASE" --label "org.homeward.stamp=$stamp" \
    -f "$context/Containerfile" -t "$image" "$context" >/dev/null || die "building $image failed"
}

# Kafka: the jars of containers/kafka/pom.xml (the broker and its tools) from Maven Central.
kafka="$CACHE/standins/kafka"
pom_stamp="$(sha256sum "$ROOT/containers/kafka/pom.xml" | cut -c1-16)"
if [ "$(cat "$kafka/libs/.stamp" 2>/dev/null)" != "$pom_stamp" ]; then
  command -v mvn >/dev/null || die "mvn not found (scripts/bootstrap.sh installs Maven)"
  say "fetching the Kafka jars from Maven Central"
  rm -rf "$kafka/libs" && mkdir -p "$kafka/libs"
  mvn -q -B -Dstyle.color=never -f "$ROOT/containers/kafka/pom.xml" dependency:copy-dependencies \
    "-DoutputDirectory=$kafka/libs" >&2 || die "Maven could not fetch the Kafka jars"
  echo "$pom_stamp" > "$kafka/libs/.stamp"
fi
build kafka "$KAFKA_STANDIN" "$kafka"

# PostgreSQL: Debian's postgresql-15, in the stand-in base already.
mkdir -p "$CACHE/standins/postgres"
build postgres "$POSTGRES_STANDIN" "$CACHE/standins/postgres"

# MailDev: the version stack/mail/package-lock.json pins, from the npm registry.
mail="$CACHE/standins/maildev"
lock_stamp="$(sha256sum "$ROOT/stack/mail/package-lock.json" | cut -c1-16)"
if [ "$(cat "$mail/node_modules/.stamp" 2>/dev/null)" != "$lock_stamp" ]; then
  command -v npm >/dev/null || die "npm not found (scripts/bootstrap.sh installs it)"
  say "installing MailDev from the npm registry"
  rm -rf "$mail" && mkdir -p "$mail"
  cp "$ROOT/stack/mail/package.json" "$ROOT/stack/mail/package-lock.json" "$mail/"
  (cd "$mail" && npm ci --no-audit --no-fund --loglevel=error --omit=dev >/dev/null) || die "npm ci of MailDev failed"
  echo "$lock_stamp" > "$mail/node_modules/.stamp"
fi
build maildev "$MAIL_STANDIN" "$mail"
