#!/usr/bin/env bash
# What recording the metrics costs a token check (issue #21), in instructions counted by
# valgrind's callgrind rather than in wall-clock rates, which swing by ±10% on a shared machine.
#
# For metrics off, then on ([metrics] listen set), on a fresh temporary data dir with one user:
# start the release server under callgrind, sign in once for a signed session token, send
# GET /frontend/api/v1/user/current with it (the benchmark's token check) 200 times to warm up,
# then zero the counters, send 200, dump; zero, send 2200, dump. Each batch is one keep-alive
# connection, so (I(2200) - I(200)) / 2000 is one request's instructions, the connection's
# setup and the dumps cancelling out. Prints both, their ratio, and the functions whose
# instructions per request differ most between the two.
#
#   bench/callgrind-metrics.sh [SERVER_BINARY]      (default target/release/latchkey)
#
# Needs valgrind (callgrind, callgrind_control, callgrind_annotate), curl and jq. Takes about
# a minute; KEEP=1 keeps the callgrind files (their directory is printed).
set -euo pipefail

server=${1:-target/release/latchkey}
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

# An unknown LATCHKEY_ variable stops the server: run it with ours only.
for name in $(env | sed -n 's/^\(LATCHKEY_[^=]*\)=.*/\1/p'); do
    unset "$name"
done
export LATCHKEY_SERVER__PUBLIC_URL=http://bench.invalid LATCHKEY_LOG__LEVEL=warn

# The instructions (Ir) of one callgrind dump.
dump_instructions() {
    sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"
}

# COUNT token checks on one keep-alive connection; fails unless every answer is 200.
send_token_checks() {
    local count=$1 url=$2 token=$3 config="$work/curl-requests"
    : >"$config"
    for ((request = 0; request < count; request++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$config"
    done
    local answers
    answers=$(curl -sS --config "$config" \
        -H "Authorization: Bearer $token" -H "User-Agent:" -H "Accept:" \
        -w '%{http_code} %{num_connects}\n')
    local ok connects
    ok=$(grep -c '^200 ' <<<"$answers" || true)
    connects=$(awk '{ sum += $2 } END { print sum }' <<<"$answers")
    if [[ $ok != "$count" || $connects != 1 ]]; then
        echo "expected $count answers 200 on one connection, got $ok on $connects" >&2
        exit 1
    fi
}

# Measures one setting: "off" or "on". Leaves the two dumps in $work/<setting>.<batch>.
measure() {
    local setting=$1 data_dir="$work/data-$1" port metrics_port=""
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
        valgrind --tool=callgrind --callgrind-out-file="$work/$setting.%p" \
        --log-file="$work/$setting.valgrind-log" \
        "$server" serve --listen "127.0.0.1:$port" 2>"$work/$setting.stderr") &
    server_pid=$!
    local base="http://127.0.0.1:$port$api"
    for ((attempt = 0; attempt < 600; attempt++)); do
        curl -sf -o /dev/null "$base/health" && break
        sleep 0.2
    done
    curl -sf -o /dev/null "$base/health" || { echo "the server did not start" >&2; exit 1; }
    local token
    token=$(curl -sS --fail -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/auth/sign-in" |
        jq -r '."jwt-token".token')
    send_token_checks "$warm_up_requests" "$base/user/current" "$token"
    for batch in "$small_batch" "$large_batch"; do
        callgrind_control -z "$server_pid" >/dev/null
        send_token_checks "$batch" "$base/user/current" "$token"
        callgrind_control -d "$setting-$batch" "$server_pid" >/dev/null
        mv "$(ls -t "$work/$setting.$server_pid".* | head -1)" "$work/$setting.$batch"
    done
    if [[ $setting == on ]]; then
        local recorded
        recorded=$(curl -sS --fail "http://127.0.0.1:$metrics_port/metrics" |
            awk '/^latchkey_http_requests_total\{/ { sum += $NF } END { print sum + 0 }')
        echo "metrics on: the server recorded $recorded requests" >&2
    fi
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

measure off
measure on

per_request() {
    local small large
    small=$(dump_instructions "$work/$1.$small_batch")
    large=$(dump_instructions "$work/$1.$large_batch")
    echo $(((large - small) / (large_batch - small_batch)))
}
off=$(per_request off)
on=$(per_request on)
echo "instructions per token check: metrics off $off, metrics on $on"
awk -v off="$off" -v on="$on" 'BEGIN {
    printf "metrics on / off: %.2f%% (%+d instructions, %+.2f%%)\n",
        100 * on / off, on - off, 100 * (on - off) / off }'

# Self instructions by source file and function (inlined code counts under the function it
# was inlined into, by its own file), the small batch taken from the large one, per request;
# then the lines whose figure differs by at least 3 instructions between the two settings.
functions_per_request() {
    local setting=$1
    for batch in "$small_batch" "$large_batch"; do
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$work/$setting.$batch" |
            awk -v batch="$batch" '/^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]/ && !/PROGRAM TOTALS/ {
                count = $1; gsub(",", "", count)
                sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); sub(/ \[[^]]*\]$/, "")
                sub(/^[^:]*\/registry\/src\/[^\/]*\//, ""); sub(/^\/rustc\/[0-9a-f]*\//, "")
                sub(/^[^:]*\/target\/release\/build\/[^\/]*\/out\/build\//, "")
                print batch "\t" count "\t" $0 }'
    done | awk -F'\t' -v small="$small_batch" -v large="$large_batch" '
        { if ($1 == large) sum[$3] += $2; else sum[$3] -= $2 }
        END { for (name in sum) printf "%.1f\t%s\n", sum[name] / (large - small), name }'
}
functions_per_request off >"$work/functions.off"
functions_per_request on >"$work/functions.on"
echo "per request, on - off, where they differ by 3 or more (file:function):"
awk -F'\t' 'FNR == NR { off[$2] = $1; next } { on[$2] = $1 }
    END {
        for (name in on) if (!(name in off)) off[name] = 0
        for (name in off) {
            difference = on[name] - off[name]
            if (difference >= 3 || difference <= -3) printf "%+9.1f  %s\n", difference, name
        }
    }' "$work/functions.off" "$work/functions.on" | sort -g -r
