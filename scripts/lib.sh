# Shared shell helpers for pxelator's lab scripts. Source it; do not run it.
# Everything here stays inside network namespaces this run creates (prefix $RUN), and every
# process started is recorded by PID in $LAB/pids and killed by the cleanup trap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/pxelator/target}
CACHE=${PXELATOR_CACHE:-/var/cache/pxelator}
RUN=${RUN:-pxl$$}
LAB=${LAB:-$(mktemp -d /tmp/pxelator-lab.XXXXXX)}
SUBNET_ID=${SUBNET_ID:-$(( ($$ % 200) + 20 ))}
NET=10.77.$SUBNET_ID
SRV=$RUN-srv
PASS=0; FAIL=0; SKIP=0

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
pass() { PASS=$((PASS+1)); printf 'PASS: %s\n' "$*"; }
fail() { FAIL=$((FAIL+1)); printf 'FAIL: %s\n' "$*"; }
skip() { SKIP=$((SKIP+1)); printf 'SKIPPED: %s\n' "$*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
summary() { printf '%s: %d passed, %d failed, %d skipped\n' "${1:-lab}" "$PASS" "$FAIL" "$SKIP"; [ "$FAIL" -eq 0 ]; }

# Runs a command in a namespace as a new session; records its PID for cleanup.
ns_bg() {
  local ns=$1 out=$2; shift 2
  setsid nsenter --net=/run/netns/"$ns" -- "$@" >"$out" 2>&1 < /dev/null &
  echo $! >> "$LAB/pids"
  echo $!
}
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

cleanup() {
  local rc=$?
  if [ -f "$LAB/pids" ]; then
    while read -r pid; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done < "$LAB/pids"
    sleep 0.5
    while read -r pid; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done < "$LAB/pids"
  fi
  # A suite's own teardown (servers that detach, mounts), before the lab directory goes.
  if declare -F lab_teardown >/dev/null; then lab_teardown || true; fi
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$RUN-" || true); do ip netns del "$n" 2>/dev/null || true; done
  [ -n "${KEEP_LAB:-}" ] || rm -rf --one-file-system "$LAB"
  exit $rc
}

# Server namespace with bridge br0 ($NET.1/24). Clients attach with add_client.
make_server_ns() {
  ip netns add "$SRV"
  ns "$SRV" ip link set lo up
  ns "$SRV" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ns "$SRV" ip addr add "$NET.1/24" dev br0
  ns "$SRV" ip link set br0 up
}

# add_client NAME MAC: a namespace with eth0 (given MAC) bridged into the server's br0.
add_client() {
  local name=$RUN-$1 mac=$2 port=p$1
  ip netns add "$name"
  ns "$name" ip link set lo up
  # Create the pair inside the server namespace, then move one end: nothing touches the host.
  ns "$SRV" ip link add "$port" type veth peer name eth0 netns "$name"
  ns "$name" ip link set eth0 address "$mac"
  ns "$SRV" ip link set "$port" master br0
  ns "$SRV" ip link set "$port" up
  ns "$name" ip link set eth0 up
}

# add_tap NAME: a tap in the server namespace for QEMU.
add_tap() {
  ns "$SRV" ip tuntap add dev "$1" mode tap
  ns "$SRV" ip link set "$1" master br0
  ns "$SRV" ip link set "$1" up
}

# PXELATOR_BIN=path uses that binary instead (e.g. a debug build while another run owns the target dir).
build_pxelator() {
  if [ -n "${PXELATOR_BIN:-}" ]; then PXELATOR=$PXELATOR_BIN; return; fi
  (cd "$ROOT" && cargo build --release --quiet --bin pxelator)
  PXELATOR=$CARGO_TARGET_DIR/release/pxelator
}

# write_config FILE [extra toml]: a config serving br0 in the server namespace.
write_config() {
  local f=$1
  mkdir -p "$LAB/conf/machines" "$LAB/conf/profiles" "$LAB/state" "$LAB/boot"
  cat > "$f" <<TOML
conf_repo = "$LAB/conf"
state_dir = "$LAB/state"
boot_dir = "$LAB/boot"
server_ip = "$NET.1"
[dhcp]
interfaces = ["br0"]
ipv6_empty_ra = ${LAB_RA:-true}
${DHCP_EXTRA:-}
[tftp]
listen = "0.0.0.0:69"
[http]
listen = "0.0.0.0:80"
[[subnet]]
network = "$NET.0/24"
pool = ["$NET.100", "$NET.199"]
router = "$NET.1"
dns = ["$NET.1"]
domain = "lab.test"
lease_secs = 600
${SUBNET_EXTRA:-}
TOML
}

start_pxelator() { # [config file]
  rm -f "$LAB/pxelator.log"
  PXL_PID=$(ns_bg "$SRV" "$LAB/pxelator.log" env RUST_LOG=info "$PXELATOR" serve --config "${1:-$LAB/pxelator.toml}")
  for _ in $(seq 1 100); do
    grep -q "pxelator ready" "$LAB/pxelator.log" 2>/dev/null && return 0
    kill -0 "$PXL_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "pxelator did not become ready:"; cat "$LAB/pxelator.log" >&2; return 1
}

# wait_for FILE PATTERN SECONDS
wait_for() {
  local f=$1 pat=$2 secs=$3 i
  for i in $(seq 1 $((secs * 2))); do
    grep -qa -- "$pat" "$f" 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}
