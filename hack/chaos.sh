#!/usr/bin/env bash
# make chaos: the chaos suite (test/chaos) on the two-node local cluster.
# Brings the cluster up (or uses a running one), installs the chart, runs
# the suite inside the cluster's network namespace and tears the cluster
# down (KEEP_CLUSTER=1 keeps it).
#   CHAOS_DURATION   how long faults are injected (4m)
#   CHAOS_FAULTS     stop once this many faults took effect (0: the duration decides)
#   CHAOS_LEASE      the Agents' Lease (4s)
#   CHAOS_KINDS      comma-separated fault kinds (all)
#   CHAOS_SEED       the random seed (the run prints the one it used)
#   CHAOS_REPORT     append the run's report (Markdown) to this file
# To end a long run early and still have its audit and report:
#   touch /var/lib/tether-cluster/chaos.stop   (under TETHER_CLUSTER_STATE)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source hack/cluster/lib.sh
source hack/cluster/tether.sh
prepare_suite chaos ./test/chaos 2
step "helm install tether charts/tether"
install_tether default

step "chaos: ${CHAOS_DURATION:-4m} of faults (inside the namespace)"
report=${CHAOS_REPORT:-}
# The test's own bound: the faults, then the settling, the audit (a long
# run's API audit log is gigabytes) and the self-check.
duration=${CHAOS_DURATION:-4m}
timeout=240m
if [[ $duration =~ ^([0-9]+)m$ ]]; then timeout=$((BASH_REMATCH[1] + 45))m; fi
[[ -z "$report" || "$report" == /* ]] || report=$ROOT/$report
stopfile=$STATE/chaos.stop
rm -f "$stopfile"
set +e
# shellcheck disable=SC2046 # test_env prints NAME=VALUE words
in_ns env $(test_env) "$STATE/chaos.test" -test.v -test.timeout "$timeout" -test.run "${CHAOS_RUN:-.}" \
	-chaos.duration "$duration" -chaos.faults "${CHAOS_FAULTS:-0}" -chaos.lease "${CHAOS_LEASE:-4s}" \
	-chaos.kinds "${CHAOS_KINDS:-}" -chaos.seed "${CHAOS_SEED:-0}" -chaos.report "$report" -chaos.stop "$stopfile" 2>&1 | tee "$LOGS/chaos.log"
status=${PIPESTATUS[0]}
set -e
[[ $status -eq 0 ]] || { echo "the chaos suite failed (log: $LOGS/chaos.log; the cluster's logs are beside it)" >&2; exit 1; }
step "chaos suite passed"
