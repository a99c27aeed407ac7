#!/usr/bin/env bash
# A single-host Ceph for development and tests: one ceph-mon, one ceph-osd (memstore by
# default), no mgr, cephx on, 127.0.0.1 only, random free mon ports, all state in one
# directory, no systemd. The project's vstart. Facts behind each setting:
# ../shared/notes/ceph.md §1 (settings) and §4 (pitfalls).
#
#   scripts/dev-ceph.sh start  [DIR]          prints the path of DIR/ceph.conf; writes DIR/env
#   scripts/dev-ceph.sh env    [DIR]          prints `export CEPH_CONF=… OKEANOS_CEPH_POOL=…`
#   scripts/dev-ceph.sh status [DIR]          daemons alive, and `ceph health`
#   scripts/dev-ceph.sh stop   [DIR] [--purge] SIGTERM by recorded PID (--purge: SIGKILL, rm -rf DIR)
#
#   eval "$(scripts/dev-ceph.sh env)"   # then: rados -p "$OKEANOS_CEPH_POOL" ls, npx vitest …
#
# DIR: the argument, else $OKEANOS_CEPH_DIR, else ./data/dev-ceph. `start` wants DIR absent,
# empty, or an earlier dev-ceph whose daemons are all dead (it is then wiped: every start
# is a fresh cluster).
# Knobs (environment):
#   OKEANOS_CEPH_POOL       pool to create (default okeanos)
#   OKEANOS_CEPH_PG         placement groups of that pool (default 16: one OSD, 2 cores)
#   OKEANOS_CEPH_STORE      memstore (default) or bluestore (a sparse file DIR/osd.0/block)
#   OKEANOS_CEPH_MEM_BYTES  memstore capacity (default 4 GiB). The OSD's RSS grows with the data
#                           stored and does not shrink fully after deletes (notes §4)
#   OKEANOS_CEPH_TIMEOUT    seconds to wait for each start-up step (default 120)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
marker=".okeanos-dev-ceph"

die() {
  echo "dev-ceph: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
command="$1"
shift
purge=false
dir=""
for argument in "$@"; do
  case "$argument" in
    --purge) purge=true ;;
    -*) usage ;;
    *) dir="$argument" ;;
  esac
done
dir="$(realpath -m "${dir:-${OKEANOS_CEPH_DIR:-$repo/data/dev-ceph}}")"
conf="$dir/ceph.conf"

pool="${OKEANOS_CEPH_POOL:-okeanos}"
pg_count="${OKEANOS_CEPH_PG:-16}"
store="${OKEANOS_CEPH_STORE:-memstore}"
mem_bytes="${OKEANOS_CEPH_MEM_BYTES:-4294967296}"
timeout_seconds="${OKEANOS_CEPH_TIMEOUT:-120}"

# The daemons we start, in stop order (osd before mon: the osd reports to the mon on the way down).
daemons=(osd.0 mon.a)

# pid_alive NAME: the recorded PID of daemon NAME if it is alive and really ours: its
# cmdline names this DIR's ceph.conf (guards against PID reuse). A zombie counts as dead.
pid_alive() {
  local pid_file="$dir/pids/$1.pid" pid state
  [ -f "$pid_file" ] || return 1
  pid="$(cat "$pid_file")"
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$conf" || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)"
  [ "$state" != Z ] || return 1
  echo "$pid"
}

any_alive() {
  local name
  for name in "${daemons[@]}"; do pid_alive "$name" >/dev/null && return 0; done
  return 1
}

# A random free pair P, P+1 in 20000–50000 for the mon's v2 and v1 addresses: never the
# default 3300/6789, so two clusters (or a system Ceph) do not collide (notes §4, "Ports").
free_port_pair() {
  local attempt port
  for attempt in $(seq 1 50); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    if ! ss -Htln "( sport = :$port or sport = :$((port + 1)) )" | grep -q .; then
      echo "$port"
      return 0
    fi
  done
  die "no free port pair found in 20000-50000"
}

write_conf() {
  local mon_port="$1" fsid="$2"
  local store_settings
  if [ "$store" = bluestore ]; then
    store_settings="osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mount = false
osd memory target = 1073741824"
  else
    store_settings="osd objectstore = memstore
memstore device bytes = $mem_bytes
memstore page set = false"
  fi
  cat >"$conf" <<EOF
# Written by scripts/dev-ceph.sh: a single-host development cluster in $dir
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port,v1:127.0.0.1:$((mon_port + 1))]
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
crash dir = $dir/crash
mon data = $dir/\$name
osd data = $dir/\$name
mon cluster log file = $dir/log/\$cluster.\$channel.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd crush initial weight = 1
mon allow pool size one = true
mon allow pool delete = true
; Without these the cluster is HEALTH_WARN for reasons that do not apply here (notes §4).
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
; No mgr: without this grace the mon reports HEALTH_ERR MGR_DOWN 120 s after mkfs.
mon mgr mkfs grace = 31536000
$store_settings

[client]
; Empty: concurrent clients would fight over one client.admin.asok ("File exists").
admin socket =
EOF
}

# start_daemon NAME ARGS…: setsid in a non-interactive shell does not fork, so $! is the daemon.
start_daemon() {
  local name="$1"
  shift
  setsid "$@" -f -c "$conf" </dev/null >"$dir/log/$name.out" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
}

# wait_for WHAT COMMAND…: retries COMMAND every 0.2 s until it succeeds, a daemon dies, or the timeout.
wait_for() {
  local what="$1" deadline=$((SECONDS + timeout_seconds)) name
  shift
  until "$@" >/dev/null 2>&1; do
    for name in "${daemons[@]}"; do
      if [ -f "$dir/pids/$name.pid" ] && ! pid_alive "$name" >/dev/null; then
        fail_start "$name died while waiting for $what"
      fi
    done
    [ "$SECONDS" -lt "$deadline" ] || fail_start "timed out after ${timeout_seconds}s waiting for $what"
    sleep 0.2
  done
}

fail_start() {
  echo "dev-ceph: start failed: $1. Logs: $dir/log/" >&2
  local log
  for log in "$dir"/log/*.out "$dir"/log/mon.a.log "$dir"/log/osd.0.log; do
    [ -s "$log" ] && { echo "==> $log <==" && tail -n 15 "$log"; } >&2
  done
  stop_daemons true
  exit 1
}

osd_up() {
  ceph --connect-timeout 5 osd dump 2>/dev/null | grep -q '^osd\.0 up'
}

pool_works() {
  local probe="$dir/probe"
  echo "dev-ceph probe" >"$probe.in"
  rados -p "$pool" put dev-ceph.probe "$probe.in" &&
    rados -p "$pool" get dev-ceph.probe "$probe.out" &&
    cmp -s "$probe.in" "$probe.out" &&
    rados -p "$pool" rm dev-ceph.probe
}

health_ok() {
  [ "$(ceph --connect-timeout 5 health 2>/dev/null)" = HEALTH_OK ]
}

write_env() {
  printf 'export CEPH_CONF=%q\nexport OKEANOS_CEPH_POOL=%q\nexport OKEANOS_CEPH_DIR=%q\n' "$conf" "$pool" "$dir" >"$dir/env"
}

start() {
  for tool in ceph-mon ceph-osd monmaptool ceph-authtool ceph rados uuidgen ss; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-common uuid-runtime iproute2"
  done
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    [ -f "$dir/$marker" ] || die "$dir is not empty and was not made by dev-ceph: refusing to touch it"
    any_alive && die "a cluster is already running in $dir (scripts/dev-ceph.sh stop $dir)"
    rm -rf "$dir"
  fi
  mkdir -p "$dir"/{log,run,pids,crash,mon.a,osd.0}
  touch "$dir/$marker"
  export CEPH_CONF="$conf"
  local began=$SECONDS fsid mon_port osd_uuid
  fsid="$(uuidgen)"
  mon_port="$(free_port_pair)"
  write_conf "$mon_port" "$fsid"

  # One keyring for everything: mon --mkfs imports all of it into the auth database.
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port,v1:127.0.0.1:$((mon_port + 1))]" \
    "$dir/monmap" >"$dir/log/monmap.out" 2>&1
  ceph-mon --mkfs -i a -c "$conf" --monmap "$dir/monmap" --keyring "$dir/keyring" >"$dir/log/mon-mkfs.out" 2>&1 ||
    fail_start "ceph-mon --mkfs failed"
  start_daemon mon.a ceph-mon -i a
  wait_for "the monitor" ceph --connect-timeout 5 mon stat

  osd_uuid="$(uuidgen)"
  [ "$(ceph osd new "$osd_uuid" 2>>"$dir/log/osd-new.out")" = 0 ] || fail_start "ceph osd new did not allocate osd.0"
  ceph-osd -i 0 -c "$conf" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 || fail_start "ceph-osd --mkfs failed"
  start_daemon osd.0 ceph-osd -i 0
  wait_for "osd.0 up" osd_up

  ceph osd pool create "$pool" "$pg_count" "$pg_count" replicated >>"$dir/log/pool.out" 2>&1 || fail_start "pool create failed"
  # An application tag, else HEALTH_WARN POOL_APP_NOT_ENABLED.
  ceph osd pool application enable "$pool" okeanos >>"$dir/log/pool.out" 2>&1 || fail_start "pool application enable failed"
  # Readiness is a real put/get (without a mgr `ceph -s` shows no pools), then health.
  wait_for "pool $pool to accept writes" pool_works
  wait_for "HEALTH_OK" health_ok
  write_env
  echo $((SECONDS - began)) >"$dir/startup-seconds"
  echo "dev-ceph: cluster up in $((SECONDS - began)) s: $dir (pool $pool, $store)" >&2
  echo "$conf"
}

# stop_daemons PURGE: SIGTERM (PURGE: SIGKILL — memstore saves its whole content on a clean
# stop, wasted work when purging) each live daemon in stop order, SIGKILL after 15 s.
stop_daemons() {
  local hard="$1" name pid deadline
  for name in "${daemons[@]}"; do
    pid="$(pid_alive "$name")" || continue
    if [ "$hard" = true ]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    deadline=$((SECONDS + 15))
    while pid_alive "$name" >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "dev-ceph: $name (pid $pid) ignored SIGTERM for 15 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
      sleep 0.1
    done
  done
}

stop() {
  [ -d "$dir" ] || die "no cluster directory $dir"
  [ -f "$dir/$marker" ] || die "$dir was not made by dev-ceph: refusing to touch it"
  stop_daemons "$purge"
  if [ "$purge" = true ]; then
    rm -rf "$dir"
    echo "dev-ceph: stopped and removed $dir" >&2
  else
    echo "dev-ceph: stopped $dir" >&2
  fi
}

status() {
  [ -f "$dir/$marker" ] || die "no dev-ceph cluster in $dir"
  local name pid down=0
  for name in "${daemons[@]}"; do
    if pid="$(pid_alive "$name")"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; down=1; fi
  done
  if [ "$down" = 0 ]; then
    echo "health: $(CEPH_CONF="$conf" timeout 20 ceph --connect-timeout 5 health 2>&1 || true)"
    echo "conf: $conf"
  fi
  return "$down"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env)
    { [ -f "$dir/env" ] && any_alive; } || die "no running dev-ceph cluster in $dir (scripts/dev-ceph.sh start $dir)"
    cat "$dir/env"
    ;;
  *) usage ;;
esac
