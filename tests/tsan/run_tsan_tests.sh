#!/bin/bash
# Builds tests/tsan (ThreadSanitizer) into $1 and runs the cache's
# concurrency tests there; any TSan report fails the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$build" -j2
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
for test in expert_cache_test expert_cache_adaptive_test access_trace_test \
            adaptive_policy_test usage_profile_test; do
  echo "== $test under ThreadSanitizer"
  "$build/${test}_tsan" --gtest_brief=1
done
