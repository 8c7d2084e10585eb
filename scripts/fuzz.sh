#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for SECONDS each (default 60): the log's event
# records, CBOR snapshots, ingress JSON, NATS subjects, config/flow text and JWTs.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 10         # CI smoke run
#   scripts/fuzz.sh 600        # long run
#
# Installs cargo-fuzz when missing. Works with only the stable toolchain: by default it builds
# without a sanitizer (`-s none`, which stable supports); our code forbids `unsafe`, and panics,
# hangs (-timeout) and runaway memory (-rss_limit_mb) are caught without one. To run under
# AddressSanitizer (needs nightly): FUZZ_SANITIZER=address scripts/fuzz.sh.
#
# Seeds come from fuzz/seeds/<target>/ (valid encodings and known nasty inputs, checked in; the
# unit test `fuzzing::tests::seed_corpus_files_match_the_encoders` keeps them current). New
# inputs go to fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/ (both ignored by
# git). Exits non-zero if any target crashed, naming the artifact.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS per target, default 60]" >&2
  exit 2
fi

# The default toolchain with no sanitizer; a sanitizer needs nightly.
sanitizer="${FUZZ_SANITIZER:-none}"
tc=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  tc=("+$FUZZ_TOOLCHAIN")
elif [ "$sanitizer" != none ]; then
  tc=(+nightly)
fi

started=$(date +%s)
if ! cargo ${tc[@]+"${tc[@]}"} fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "== $(cargo ${tc[@]+"${tc[@]}"} fuzz --version) on $(cargo ${tc[@]+"${tc[@]}"} --version), sanitizer: $sanitizer"

targets=(event_record snapshot ingress_json nats_subject config jwt)

echo "== building ${#targets[@]} targets"
cargo ${tc[@]+"${tc[@]}"} fuzz build -s "$sanitizer"
built=$(date +%s)
echo "== built in $((built - started)) s (including any install)"

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds} s"
  mkdir -p "fuzz/corpus/$target"
  log="fuzz/artifacts/$target.log"
  mkdir -p "fuzz/artifacts/$target"
  # The first corpus dir receives new inputs; the seeds dir is read only.
  if cargo ${tc[@]+"${tc[@]}"} fuzz run -s "$sanitizer" "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    echo "   ok: $(grep -E '^(stat::number_of_executed_units|#[0-9]+ *DONE)' "$log" | tail -n 1)"
  else
    echo "   FAILED: $target (full output in $log)"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|artifact_prefix' "$log" | sed 's/^/   /' || true
    failed+=("$target")
  fi
done

echo "== done in $(($(date +%s) - started)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashes in: ${failed[*]}; reproduce with: cargo ${tc[*]:-} fuzz run -s $sanitizer <target> <artifact>" >&2
  exit 1
fi
