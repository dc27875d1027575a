#!/bin/sh
# Runs one editbatch job for cron: loads the key from an owner-only environment file, runs the
# job with plain progress, and writes into the log what its exit status means.
# Usage: editbatch-nightly MANIFEST [RUN OPTIONS...]     (see jobs/cron/README.md)
set -u

manifest=${1:?usage: editbatch-nightly MANIFEST [RUN OPTIONS...]}
shift
env_file=${EDITBATCH_ENV_FILE:-/etc/editbatch/env}
status_dir=${EDITBATCH_STATUS_DIR:-/srv/editbatch/status}
job=$(basename "$manifest" .yaml)
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# The file holds the API key: refuse it when anyone but its owner could read it.
if [ ! -r "$env_file" ]; then
    echo "$(now) editbatch-nightly: cannot read $env_file; create it (KEY=value lines, chmod 600)" >&2
    exit 2
fi
if [ -n "$(find "$env_file" -perm /077)" ]; then
    echo "$(now) editbatch-nightly: $env_file is open to others; run: chmod 600 $env_file" >&2
    exit 2
fi
set -a # export every KEY=value of the file to editbatch
. "$env_file"
set +a

PATH=/opt/editbatch/bin:$PATH
export PATH
umask 027

echo "$(now) editbatch-nightly: starting $manifest"
rc=0
editbatch run "$manifest" \
    --progress plain \
    --grace 30 \
    --summary-file "$status_dir/$job.json" \
    --metrics-file "$status_dir/$job.prom" \
    "$@" || rc=$?

case $rc in
    0) verdict="done: every item is done" ;;
    1) verdict="some items failed: see 'editbatch report $manifest'; fix them, then run again with --retry-failed" ;;
    2) verdict="nothing sent: the manifest, an input or the command line is invalid, or another run holds the ledger" ;;
    3) verdict="budget stop, as planned: the next run resumes the pending items" ;;
    4) verdict="ABORTED: bad key, no quota or unknown model; fix it before the next run" ;;
    5) verdict="batch mode: batches in flight at the provider; the next run collects them" ;;
    75) verdict="provider outage: it failed every request for limits.max_outage_s; the next run resumes the pending items" ;;
    130 | 143) verdict="interrupted and drained: the next run resumes" ;;
    *) verdict="internal error (a bug in editbatch): rerun with EDITBATCH_DEBUG=1 and report it" ;;
esac
echo "$(now) editbatch-nightly: exit $rc: $verdict"

# cron ignores exit statuses: tell syslog about the ones a human has to act on.
case $rc in
    0 | 3 | 5 | 130 | 143) ;;
    75) logger -t editbatch -p user.warning "$job: exit $rc: $verdict" 2>/dev/null || true ;;
    *) logger -t editbatch -p user.err "$job: exit $rc: $verdict" 2>/dev/null || true ;;
esac
exit "$rc"
