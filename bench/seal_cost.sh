#!/bin/bash
# What one read's seal costs, for one tree of the code (SRC) on a fresh store of the contract
# check's seed-7 scenario (SQLite, or a PostgreSQL server's URL without a database): the
# statements and CPU of a `records` command's closing seal (bench/seal_cost.py), the whole
# command's CPU (user + system, /usr/bin/time) REPEAT times, `tokens list`'s, and one API
# read's seal through `serve` (the seal as it stops) on PORT. One tab-separated line a figure
# to OUT; run it once per tree and interleave the trees, as the machine's load moves.
#
#   bench/seal_cost.sh src /tmp/new.tsv [postgresql://postgres@127.0.0.1:PORT] [REPEAT] [PORT]
#
# Compile SRC first (env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q SRC).
set -u
SRC=$(realpath "$1"); OUT=$(realpath "$2"); PG=${3:-}; REPEAT=${4:-5}; PORT=${5:-20510}
HERE=$(cd "$(dirname "$0")/.." && pwd)
S=$HERE/.venv/bin/servicetrail; P=$HERE/.venv/bin/python; B=$HERE/bench/seal_cost.py
CHECK=${CHECK:-$HERE/../shared/contract}
export PYTHONPATH=$SRC
d=$(mktemp -d); cd "$d" || exit 1
"$P" -c "import sys; sys.path.insert(0, '$CHECK'); import check_contract as c; from pathlib import Path; c.random_scenario(7, 600).write(Path('.'))"
if [ -n "$PG" ]; then
  db=seal_$(basename "$d" | tr -dc 'a-z0-9')
  "$P" -c "import psycopg, sys; psycopg.connect(sys.argv[1], autocommit=True).execute('CREATE DATABASE $db')" "$PG/postgres"
  export SERVICETRAIL_DATABASE_URL=$PG/$db; engine=postgresql
else
  export SERVICETRAIL_DATABASE_URL=sqlite:///$d/acc.db; engine=sqlite
fi
tree=$(basename "$(dirname "$SRC")")
for what in "load users users.csv" "load devices devices.csv" "load responsibilities responsibilities.csv" "ingest records.jsonl"; do
  $S $what >/dev/null 2>&1
done
$S records --party P01 --format jsonl >/dev/null 2>&1  # the access log's first seal
"$P" "$B" records --party P01 --format jsonl 2>&1 >/dev/null | grep '^seal' \
  | sed "s/^/$tree\t$engine\tcli\t/" >> "$OUT"
for _ in $(seq "$REPEAT"); do
  /usr/bin/time -o t -f "%U %S" "$S" records --party P01 --format jsonl >/dev/null 2>&1
  echo -e "$tree\t$engine\trecords cpu ms\t$(awk '{printf "%d", ($1+$2)*1000}' t)" >> "$OUT"
done
echo "correct horse battery staple 9!" | $S accounts create acc_p01 --party P01 >/dev/null 2>&1
token=$($S tokens create acc_p01 2>/dev/null | grep -o 'st_[A-Za-z0-9_-]*' | head -1)
for _ in $(seq "$REPEAT"); do
  /usr/bin/time -o t -f "%U %S" "$S" tokens list >/dev/null 2>&1
  echo -e "$tree\t$engine\ttokens list cpu ms\t$(awk '{printf "%d", ($1+$2)*1000}' t)" >> "$OUT"
done
"$P" "$B" serve --port "$PORT" 2>server.err &
server=$!
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$PORT/api/v1/records?limit=5")
  [ "$code" != 000 ] && break
  sleep 0.2
done
echo -e "$tree\t$engine\tapi read\tHTTP $code" >> "$OUT"
kill -TERM "$server"; wait "$server"
grep '^seal' server.err | tail -1 | sed "s/^/$tree\t$engine\tapi\t/" >> "$OUT"
cd /; rm -rf "$d"
