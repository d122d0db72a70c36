#!/usr/bin/env bash
# One database and one login role per Homeward service: homeward_<service> owns the
# database homeward_<service> and can reach no other. Run by the official postgres image
# from /docker-entrypoint-initdb.d on the first start of an empty data volume (see
# docker-compose.yml); it is idempotent, so it can also be run by hand against a live server:
#   docker-compose exec postgres bash /docker-entrypoint-initdb.d/10-homeward.sh
#
# Passwords come from DB_PASSWORD_<SERVICE> (e.g. DB_PASSWORD_PLACEMENTS), defaulting to
# the role name for local use. Schemas are not created here: each service applies its own
# migrations when it starts. The body runs in a subshell so that it behaves the same
# whether the image's entrypoint executes this file or sources it.
(
set -euo pipefail

for service in ${HOMEWARD_DB_SERVICES:-ingress referrals placements budget notifications}; do
  role="homeward_${service}"
  password_var="DB_PASSWORD_${service^^}"
  password="${!password_var:-$role}"
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'role') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'role', :'role') \gexec
SQL
  echo "homeward: database and role ${role} ready"
done
)
