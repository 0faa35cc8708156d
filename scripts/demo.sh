#!/usr/bin/env bash
# Run the whole pipeline locally on one dataset, serve its bundle on
# 127.0.0.1, print recommendations for a real user, then stop the server.
#
# Usage: scripts/demo.sh [movielens-1m|lastfm-2k]
#
# Settings, read from the environment:
#   GFM_DATA_DIR   folder with ml-1m/ and lastfm-2k/ (default: downloads
#                  the official archives into ~/.cache/gfm)
#   GFM_VENV       the environment made by scripts/setup_env.sh (default: .venv)
#   GFM_DEMO_DIR   where the run's artifacts and logs go
#                  (default: runs/demo-DATASET)
#   GFM_DEMO_SET   extra settings for the run (default:
#                  "twotower.num_threads=1"), for example
#                  "hgnn.max_epochs=2 twotower.max_epochs=2"; set it empty to
#                  keep every shipped setting
#   GFM_DEMO_SKIP_RUN=1  serve the run recorded in GFM_DEMO_DIR/run.json
#                  again instead of running the pipeline
set -euo pipefail

cd "$(dirname "$0")/.."
dataset="${1:-movielens-1m}"
case "$dataset" in
    movielens-1m|lastfm-2k) ;;
    *) echo "demo: unknown dataset '$dataset'; use movielens-1m or lastfm-2k" >&2; exit 2 ;;
esac

venv="${GFM_VENV:-.venv}"
python="$venv/bin/python"
gfm="$venv/bin/gfm"
work="${GFM_DEMO_DIR:-runs/demo-$dataset}"
mkdir -p "$work"

# A local Ray cluster binds 127.0.0.1 with these; vLLM and Hugging Face stay
# offline.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled \
    RAY_USAGE_STATS_ENABLED=0 VLLM_HOST_IP=127.0.0.1 HF_HUB_OFFLINE=1

# One torch thread for the two-tower step: on 2 cores shared with other
# work, torch's default of 2 intra-op threads made a MovieLens-1M epoch
# 5 to 10 times slower (docs/benchmarks/twotower.md).
overrides=()
for setting in ${GFM_DEMO_SET-twotower.num_threads=1}; do
    overrides+=(--set "$setting")
done

start=$SECONDS
if [[ "${GFM_DEMO_SKIP_RUN:-0}" == 1 && -f "$work/run.json" ]]; then
    echo "demo: serving the earlier run recorded in $work/run.json"
else
    echo "demo: running the pipeline on $dataset (logs in $work/pipeline.log)"
    if ! "$gfm" run --local --config "$dataset" "${overrides[@]}" \
            --set deploy.dry_run=true \
            --pipeline-root "$work/pipeline-root" \
            --output-json "$work/run.json" > "$work/pipeline.log" 2>&1; then
        tail -n 40 "$work/pipeline.log" >&2
        echo "demo: the pipeline failed; the whole log is $work/pipeline.log" >&2
        exit 1
    fi
    grep -v '^\s*$' "$work/pipeline.log" | sed -n '/^run folder:/,$p'
fi
pipeline_seconds=$((SECONDS - start))

bundle="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["bundle_dir"])' "$work/run.json")"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
url="http://127.0.0.1:$port"

echo "demo: serving $bundle at $url (log in $work/serve.log)"
"$gfm" serve --bundle "$bundle" --host 127.0.0.1 --port "$port" > "$work/serve.log" 2>&1 &
server_pid=$!
stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        echo "demo: stopped the server (pid $server_pid)"
    fi
}
trap stop_server EXIT

if ! "$python" -c 'import sys; from gfm.serving.client import RecommendClient; RecommendClient(sys.argv[1]).wait_ready(timeout_s=180)' "$url"; then
    tail -n 20 "$work/serve.log" >&2
    echo "demo: the server did not become ready; its log is $work/serve.log" >&2
    exit 1
fi

read -r user products <<< "$("$python" -m gfm.pipelines.demo pick "$bundle")"
for product in $products; do
    "$gfm" recommend --url "$url" --product "$product" --user-id "$user" --k 10 \
        > "$work/recommend-$product.json"
    "$python" -m gfm.pipelines.demo show "$work/run.json" "$work/recommend-$product.json"
done
if [[ "${GFM_DEMO_SKIP_RUN:-0}" == 1 ]]; then
    echo "demo: served an earlier run in $((SECONDS - start)) s"
else
    echo "demo: pipeline $pipeline_seconds s, whole demo $((SECONDS - start)) s"
fi
