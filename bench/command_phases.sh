#!/bin/bash
# Each command the shared contract check starts, on a fresh SQLite store of its seed-7
# scenario: the whole start's CPU (user + system, /usr/bin/time) and, in a second pass,
# bench/command_phases.py's split of it. One line a command to OUT; run it once per tree of
# the code (SRC) and interleave the trees, as the machine's load moves.
#
#   bench/command_phases.sh src /tmp/new.tsv; bench/command_phases.sh /tmp/old/src /tmp/old.tsv
#
# Compile SRC first (env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q SRC):
# CI's collection leaves every module compiled but for three, and this machine, as CI,
# sets PYTHONDONTWRITEBYTECODE, so a tree never compiled pays for it at every start.
set -u
SRC=$(realpath "$1"); OUT=$(realpath "$2")
HERE=$(cd "$(dirname "$0")/.." && pwd)
S=$HERE/.venv/bin/servicetrail; P=$HERE/.venv/bin/python; H=$HERE/bench/command_phases.py
CHECK=${CHECK:-$HERE/../shared/contract}
export PYTHONPATH=$SRC
for mode in whole phases; do
  d=$(mktemp -d); cd "$d" || exit 1
  "$P" -c "import sys; sys.path.insert(0, '$CHECK'); import check_contract as c; from pathlib import Path; c.random_scenario(7, 600).write(Path('.'))"
  export SERVICETRAIL_DATABASE_URL=sqlite:///$d/acc.db
  one() {  # a name, the standard input, the command's arguments
    local name=$1 in=$2; shift 2
    if [ "$mode" = whole ]; then
      /usr/bin/time -o t -f "%U %S" "$S" "$@" <<<"$in" >/dev/null 2>&1
      echo -e "$name\twhole\t$(awk '{printf "%d", ($1+$2)*1000}' t)" >> "$OUT"
    else
      "$P" "$H" "$@" <<<"$in" >/dev/null 2>err
      echo -e "$name\tphases\t$(grep 'phases ms' err)" >> "$OUT"
    fi
  }
  one "load users" "" load users users.csv
  one "load devices" "" load devices devices.csv
  one "load responsibilities" "" load responsibilities responsibilities.csv
  one "ingest (new)" "" ingest records.jsonl
  one "ingest (again)" "" ingest records.jsonl
  one "records --format jsonl" "" records --party P01 --format jsonl
  one "report own" "" report own --party P01 --from 2025-01-01T00:00:00Z --to 2026-01-01T00:00:00Z
  one "accounts create" "correct horse battery staple 9!" accounts create acc_p01 --party P01
  one "tokens create" "" tokens create acc_p01
  one "--version" "" --version
  cd /; rm -rf "$d"
done
