#!/usr/bin/env bash
# What recording the metrics costs a token check (issue #21), in instructions counted by
# valgrind's callgrind rather than in wall-clock rates, which swing by ±10% on a shared machine.
#
# For metrics off, then on ([metrics] listen set), on a fresh temporary data dir with one user:
# start the release server under callgrind, sign in once for a signed session token, send
# GET /frontend/api/v1/user/current with it (the benchmark's token check) 200 times to warm up,
# then zero the counters, send 200, dump; zero, send 2200, dump. Each batch is one keep-alive
# connection, so (I(2200) - I(200)) / 2000 is one request's instructions, the connection's
# setup and the dumps cancelling out. The pair is run RUNS times (default 3), because the
# runtime's scheduling moves a count by about ±100 from run to run; the medians are compared.
# Prints both, their ratio, and the functions whose instructions per request differ most
# between the two settings (averaged over the runs).
#
#   bench/callgrind-metrics.sh [SERVER_BINARY]   (default: this checkout's target/release/latchkey)
#
# RUNS=N sets the runs; TOKIO_WORKER_THREADS=1 (read by tokio) quiets the scheduling further;
# KEEP=1 keeps the callgrind files (their directory is printed). Needs valgrind (callgrind,
# callgrind_control, callgrind_annotate), curl and jq. About 10 s a run.
set -euo pipefail

# A server binary named on the command line is taken from the caller's directory.
server=$(realpath "${1:-$(dirname "$0")/../target/release/latchkey}")
runs=${RUNS:-3}
warm_up_requests=200
small_batch=200
large_batch=2200
api=/frontend/api/v1
email=callgrind@example.com
password=callgrind-password

for tool in valgrind callgrind_control callgrind_annotate curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
[[ -x $server ]] || { echo "no server binary at $server (cargo build --release)" >&2; exit 1; }

work=$(mktemp -d -t latchkey-callgrind.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "callgrind files kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# An unknown LATCHKEY_ variable stops the server: run it with ours only.
for name in $(env | sed -n 's/^\(LATCHKEY_[^=]*\)=.*/\1/p'); do
  unset "$name"
done
export LATCHKEY_SERVER__PUBLIC_URL=http://bench.invalid LATCHKEY_LOG__LEVEL=warn

# A loopback port nothing listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# COUNT token checks on one keep-alive connection; fails unless every answer is 200.
send_token_checks() {
  local count=$1 url=$2 token=$3 config="$work/curl-requests"
  : >"$config"
  for ((request = 0; request < count; request++)); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$config"
  done
  local answers ok connects
  answers=$(curl -sS --config "$config" \
    -H "Authorization: Bearer $token" -H "User-Agent:" -H "Accept:" \
    -w '%{http_code} %{num_connects}\n')
  ok=$(grep -c '^200 ' <<<"$answers" || true)
  connects=$(awk '{ sum += $2 } END { print sum }' <<<"$answers")
  if [[ $ok != "$count" || $connects != 1 ]]; then
    echo "expected $count answers 200 on one connection, got $ok on $connects" >&2
    exit 1
  fi
}

# Measures one setting ("off" or "on") once; leaves its two dumps in $work/<name>.<batch>.
measure() {
  local setting=$1 name=$2 data_dir="$work/data-$2" port metrics_port=""
  mkdir -p "$data_dir"
  printf '%s\n' "$password" |
    LATCHKEY_DATA_DIR="$data_dir" "$server" user add --email "$email" --password-stdin \
      >/dev/null
  port=$(free_port)
  local metrics_listen=()
  if [[ $setting == on ]]; then
    metrics_port=$(free_port)
    metrics_listen=(LATCHKEY_METRICS__LISTEN="127.0.0.1:$metrics_port")
  fi
  # exec: the background job's pid is valgrind's, for callgrind_control.
  (exec env LATCHKEY_DATA_DIR="$data_dir" "${metrics_listen[@]}" \
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.%p" \
    --log-file="$work/$name.valgrind-log" \
    "$server" serve --listen "127.0.0.1:$port" 2>"$work/$name.stderr") &
  server_pid=$!
  local base="http://127.0.0.1:$port$api"
  for ((attempt = 0; attempt < 600; attempt++)); do
    curl -sf -o /dev/null "$base/health" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "$base/health" || {
    echo "the server did not start; its stderr:" >&2
    cat "$work/$name.stderr" >&2
    exit 1
  }
  local token
  token=$(curl -sS --fail -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/auth/sign-in" |
    jq -r '."jwt-token".token')
  send_token_checks "$warm_up_requests" "$base/user/current" "$token"
  for batch in "$small_batch" "$large_batch"; do
    callgrind_control -z "$server_pid" >/dev/null
    send_token_checks "$batch" "$base/user/current" "$token"
    callgrind_control -d "$name-$batch" "$server_pid" >/dev/null
    mv "$(ls -t "$work/$name.$server_pid".* | head -1)" "$work/$name.$batch"
  done
  if [[ $setting == on ]]; then
    local recorded
    recorded=$(curl -sS --fail "http://127.0.0.1:$metrics_port/metrics" |
      awk '/^latchkey_http_requests_total\{/ && /route="\/user\/current"/ &&
        /method="GET"/ && /status="200"/ { sum += $NF } END { print sum + 0 }')
    local expected=$((warm_up_requests + small_batch + large_batch))
    if [[ $recorded != "$expected" ]]; then
      echo "the server with metrics recorded $recorded token checks, not $expected" >&2
      exit 1
    fi
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}

# The instructions (Ir) of one callgrind dump.
dump_instructions() {
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"
}

per_request() {
  local small large
  small=$(dump_instructions "$work/$1.$small_batch")
  large=$(dump_instructions "$work/$1.$large_batch")
  echo $(((large - small) / (large_batch - small_batch)))
}

# Self instructions per request by source file and function (inlined code counts under the
# function it was inlined into, by its own file): the small batch taken from the large one.
# Lines above half the total are the threads' roots (the annotation's own totals): left out.
functions_per_request() {
  local name=$1
  for batch in "$small_batch" "$large_batch"; do
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$work/$name.$batch" |
      awk -v batch="$batch" -v total="$(dump_instructions "$work/$name.$batch")" '
        /^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]/ && !/PROGRAM TOTALS/ {
        count = $1; gsub(",", "", count)
        if (count + 0 > total / 2) next
        sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); sub(/ \[[^]]*\]$/, "")
        sub(/^[^:]*\/registry\/src\/[^\/]*\//, ""); sub(/^\/rustc\/[0-9a-f]*\//, "")
        sub(/^[^:]*\/target\/release\/build\/[^\/]*\/out\/build\//, "")
        print batch "\t" count "\t" $0 }'
  done | awk -F'\t' -v small="$small_batch" -v large="$large_batch" '
    { if ($1 == large) sum[$3] += $2; else sum[$3] -= $2 }
    END { for (name in sum) printf "%.2f\t%s\n", sum[name] / (large - small), name }'
}

median() {
  sort -n | awk '{ value[NR] = $1 } END { print value[int((NR + 1) / 2)] }'
}

: >"$work/functions.off"
: >"$work/functions.on"
for ((run = 1; run <= runs; run++)); do
  for setting in off on; do
    measure "$setting" "$setting-$run"
    per_request "$setting-$run" >>"$work/per-request.$setting"
    functions_per_request "$setting-$run" >>"$work/functions.$setting"
  done
  echo "run $run: metrics off $(tail -1 "$work/per-request.off"), on $(tail -1 "$work/per-request.on") instructions per token check" >&2
done

off=$(median <"$work/per-request.off")
on=$(median <"$work/per-request.on")
echo "instructions per token check (median of $runs runs): metrics off $off, metrics on $on"
echo "  runs off: $(paste -sd' ' "$work/per-request.off"); on: $(paste -sd' ' "$work/per-request.on")"
awk -v off="$off" -v on="$on" 'BEGIN {
  printf "metrics on / off: %.2f%% (%+d instructions, %+.2f%%)\n",
    100 * on / off, on - off, 100 * (on - off) / off }'
# Valgrind hides the CPU's SHA extensions, so SHA-256 (of the token, for the verified-token
# cache) runs in software here; natively it takes far fewer instructions. The ratio without it:
sha=$(awk -F'\t' -v runs="$runs" '/sha2::sha256::compress256/ { sum += $1 }
  END { printf "%d", sum / runs }' "$work/functions.off")
awk -v off="$off" -v on="$on" -v sha="$sha" 'BEGIN {
  printf "  of which SHA-256 in software (valgrind hides SHA-NI): %d; without it, on / off: %.2f%%\n",
    sha, 100 * (on - sha) / (off - sha) }'

echo "per request, on - off, averaged over the runs, where they differ by 3 or more (file:function):"
awk -F'\t' -v runs="$runs" 'FNR == NR { off[$2] += $1; next } { on[$2] += $1 }
  END {
    for (name in on) if (!(name in off)) off[name] = 0
    for (name in off) {
      difference = (on[name] - off[name]) / runs
      if (difference >= 3 || difference <= -3) printf "%+9.1f  %s\n", difference, name
    }
  }' "$work/functions.off" "$work/functions.on" | sort -g -r
