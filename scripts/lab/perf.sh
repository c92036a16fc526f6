# perfdhcp helpers (Kea's perfdhcp acts as a relay: it sets giaddr to its own address and wants
# replies on port 67, so it needs an address on its interface). Source after lib.sh.
RELAY_NET=10.78

# A client namespace 'perf' on the LAN ($NET.2) that is also the relay for segment
# $RELAY_NET.0.0/16 (its address there: $RELAY_NET.0.2). The server reaches that segment
# through the relay, as in a routed network; it has no address on it itself.
setup_perf_client() {
  add_client perf 52:54:00:bb:00:01
  ns "$RUN-perf" ip addr add "$NET.2/24" dev eth0
  ns "$RUN-perf" ip addr add "$RELAY_NET.0.2/16" dev eth0
  ns "$SRV" ip route add "$RELAY_NET.0.0/16" via "$NET.2"
}

# The relayed segment: a /16 pool large enough for every simulated client.
relay_subnet_toml() {
  cat <<TOML
[[subnet]]
network = "$RELAY_NET.0.0/16"
pool = ["$RELAY_NET.1.0", "$RELAY_NET.250.255"]
router = "$RELAY_NET.0.1"
lease_secs = 3600
TOML
}

# run_perfdhcp RATE SECONDS CLIENTS OUTFILE [extra args]: prints "sent recv drops malformed".
run_perfdhcp() {
  local rate=$1 secs=$2 clients=$3 out=$4; shift 4
  ns "$RUN-perf" timeout $((secs + 30)) perfdhcp -4 -r "$rate" -p "$secs" -R "$clients" -l "$RELAY_NET.0.2" \
      -W 2000000 "$@" "$NET.1" > "$out" 2>&1 || true
}
