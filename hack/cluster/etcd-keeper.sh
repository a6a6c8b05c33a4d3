#!/usr/bin/env bash
# Keeps the local cluster's etcd under its backend quota, as an operator's
# defrag job does in production. The API server compacts old revisions every
# five minutes, but compaction only frees pages inside etcd's file; the quota
# counts the whole file, so a long run of writes (the chaos suite's
# thousand-fault runs) filled it and etcd refused every write ("mvcc: database
# space exceeded"). Every INTERVAL seconds this reads etcd's status and, when
# more than SLACK bytes of the file are free pages, defragments it; if etcd
# raised its NOSPACE alarm and defragmenting brought the file back under the
# quota, it clears the alarm. Runs inside the cluster's network namespace
# (cluster.sh starts it); etcd's JSON gateway on 127.0.0.1:2379 is all it uses.
set -uo pipefail

ETCD=${ETCD:-http://127.0.0.1:2379}
INTERVAL=${INTERVAL:-120}
SLACK=${SLACK:-268435456}   # 256 MiB of free pages
QUOTA=${QUOTA:-8589934592}  # the --quota-backend-bytes cluster.sh gives etcd

call() { curl -sf --max-time 120 -X POST "$ETCD/v3/maintenance/$1" -d "${2:-{\}}"; }
log() { echo "$(date -u +%FT%TZ) $*"; }

keep() {
	local status size inuse alarms
	status=$(call status) || { log "status: etcd did not answer"; return; }
	size=$(jq -r '.dbSize // 0' <<<"$status")
	inuse=$(jq -r '.dbSizeInUse // 0' <<<"$status")
	alarms=$(call alarm '{"action":"GET"}' | jq -c '[.alarms[]? | {memberID, alarm}]')
	if ((size - inuse > SLACK)) || [[ "$alarms" != "[]" ]]; then
		log "defragmenting: file $size bytes, $inuse in use, alarms $alarms"
		call defragment >/dev/null || { log "defragment failed"; return; }
		status=$(call status) || return
		size=$(jq -r '.dbSize // 0' <<<"$status")
		log "defragmented: file $size bytes"
	fi
	if [[ "$alarms" != "[]" ]] && ((size < QUOTA * 8 / 10)); then
		jq -c '.[] | select(.alarm == "NOSPACE")' <<<"$alarms" | while read -r a; do
			call alarm "$(jq -c '. + {action: "DEACTIVATE"}' <<<"$a")" >/dev/null && log "cleared alarm $a"
		done
	fi
}

log "keeping $ETCD: every ${INTERVAL}s, defragment past $SLACK free bytes, quota $QUOTA"
# The pause runs in the background so that cluster.sh down's TERM ends it too.
pause=
trap '[[ -n "$pause" ]] && kill "$pause" 2>/dev/null; exit 0' TERM INT
while true; do
	keep
	sleep "$INTERVAL" &
	pause=$!
	wait "$pause"
done
