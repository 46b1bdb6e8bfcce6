#!/usr/bin/env bash
# Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d): one owner per database,
# so Orthanc's index, OncoFlow's jobs and Keycloak never share credentials.
set -euo pipefail
for entry in "orthanc:orthanc_index:$ORTHANC_DB_PASSWORD" "oncoflow:oncoflow:$ONCOFLOW_DB_PASSWORD" \
             "keycloak:keycloak:$KEYCLOAK_DB_PASSWORD"; do
  IFS=: read -r role database password <<<"$entry"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v role="$role" -v database="$database" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
done
