#!/usr/bin/env bash
# Tests wait on conditions (internal/testing/await), they do not sleep and
# then assert. This fails on a time.Sleep in a test file beyond what the
# allow-list below grants it; each entry says why the sleep is not a wait.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A allowed=(
	# A fake server step that outlives the test on purpose.
	[client/client_test.go]=1
	# Let the informer cache see the pods before a burst; placement itself is
	# then awaited.
	[controllers/placement_test.go]=1
	[controllers/scale_test.go]=2
	# Redis stopped and restarted at set points of a running workload.
	[eventlog/redislog/redislog_test.go]=4
	# Polls with their own failure messages.
	[gateway/auth_test.go]=2
	[gateway/cursor_test.go]=1
	[test/chart/runtime_policy_test.go]=1
	# Benchmarks pace their load; the soak paces faults and clients.
	[test/bench/bench_test.go]=2
	[test/bench/setup_test.go]=1
	# A benchmark measures over fixed windows.
	[test/bench/idle_test.go]=2
	[controllers/fleet_test.go]=2
	# A benchmark adds a loaded API server's delay to each request.
	[eventlog/kubelog/claimread_test.go]=1
	# An appender pauses after an append failed during a failover.
	[eventlog/redislog/distributed_test.go]=1
	# The chaos suite paces its clients (a human reading a prompt) and holds
	# its faults (a pod frozen past its Lease, a node cut off).
	[test/chaos/client_test.go]=5
	[test/chaos/faults_test.go]=3
	[test/chaos/chaos_test.go]=1
	[test/chaos/audit_test.go]=1
	[test/chaos/refunds_test.go]=2
)

failed=0
while IFS= read -r file; do
	n=$(grep -c 'time\.Sleep' "$file" || true)
	[[ $n -eq 0 ]] && continue
	max=${allowed[$file]:-0}
	if ((n > max)); then
		echo "$file: $n time.Sleep, $max allowed: wait on a condition with internal/testing/await instead (Until, Stays)" >&2
		failed=1
	fi
done < <(git ls-files '*_test.go')
exit $failed
