#!/bin/sh
# pxelator pool join: makes (the first time) and runs this machine's Ceph OSD on the disk its
# pool_disk param names. Run at boot by the live system (pxelator-pool.service), in the
# foreground: it ends when the OSD process does (its log's end printed if that was a failure).
#   pool-join [URL [DIR]]   URL: default the pxelator.pool= kernel argument
#                           DIR: where the OSD's configuration lives (default /run/pxelator-pool)
# Safe by construction: it only touches the disk the appliance names, and only when that disk
# is blank or already holds this very OSD (its uuid in the BlueStore label).
set -eu
say() { echo "pool-join: $*" >&2; }
url=${1:-}
if [ -z "$url" ]; then
  url=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^pxelator\.pool=//p' | tail -n 1)
fi
if [ -z "$url" ]; then say "no pxelator.pool= on the kernel command line: this machine gives no disk to the pool"; exit 0; fi
case "$url" in
  http://*) ;;
  *) say "$url is not an http:// URL"; exit 2 ;;
esac
dir=${2:-/run/pxelator-pool}
umask 077
mkdir -p "$dir"
conf=$dir/ceph.conf
i=0
until curl -fsS --max-time 30 -o "$conf.new" "$url"; do
  i=$((i + 1))
  if [ "$i" -ge 20 ]; then say "could not fetch $url (20 tries)"; exit 3; fi
  sleep 3
done
mv "$conf.new" "$conf"
# The first line, in the fixed form the appliance writes: "# pxelator-osd id=N uuid=U disk=D".
head=$(head -n 1 "$conf")
pat='^# pxelator-osd id=\([0-9]\{1,6\}\) uuid=\([0-9a-f-]\{36\}\) disk=\(/[A-Za-z0-9/_.:+-]*\)$'
id=$(echo "$head" | sed -n "s|$pat|\1|p")
uuid=$(echo "$head" | sed -n "s|$pat|\2|p")
disk=$(echo "$head" | sed -n "s|$pat|\3|p")
if [ -z "$id" ] || [ -z "$uuid" ] || [ -z "$disk" ]; then say "unexpected join material from $url: $head"; exit 4; fi
case "$disk" in *..*) say "disk $disk has ..; refusing"; exit 4 ;; esac
if [ ! -e "$disk" ]; then say "$disk (pool_disk) does not exist on this machine"; exit 5; fi
data=$dir/osd-$id
mkdir -p "$data"
set -- -c "$conf" -i "$id" --osd-data "$data" --run-dir "$dir" --pid-file "$dir/osd.$id.pid" \
  --admin-socket "$dir/osd.$id.asok" --log-file "$dir/osd.$id.log" --crash-dir "$dir" \
  --keyring "$data/keyring"
printf '[osd.%s]\n\tkey = %s\n' "$id" "$(sed -n 's/^key = //p' "$conf")" > "$data/keyring"
if ceph-bluestore-tool show-label --dev "$disk" 2>/dev/null | grep -q "\"osd_uuid\": \"$uuid\""; then
  say "$disk holds osd.$id: starting it"
  ceph-bluestore-tool prime-osd-dir --dev "$disk" --path "$data" --no-mon-config
  ln -sfn "$disk" "$data/block"
elif [ "$(head -c 1048576 "$disk" | tr -d '\000' | head -c 1 | wc -c)" -eq 0 ]; then
  say "$disk is blank: making osd.$id on it"
  ln -sfn "$disk" "$data/block"
  ceph -c "$conf" -n "osd.$id" --keyring "$data/keyring" --connect-timeout 60 mon getmap -o "$dir/monmap"
  ceph-osd "$@" --mkfs --osd-uuid "$uuid" --osd-objectstore bluestore --monmap "$dir/monmap"
else
  say "$disk holds data that is not osd.$id: refusing to touch it (wipe it by hand if it is meant for the pool)"
  exit 6
fi
say "running osd.$id"
rc=0
ceph-osd "$@" -f || rc=$?
if [ "$rc" -ne 0 ]; then
  say "osd.$id exited $rc; the end of its log ($dir/osd.$id.log):"
  tail -n 20 "$dir/osd.$id.log" >&2
fi
exit "$rc"
