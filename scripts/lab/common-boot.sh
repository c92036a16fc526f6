# Boot-lab helpers: boot files, inventory for the boot modes, and QEMU runs. Source after lib.sh.

MODES_ALL="bios-ipxe bios-pxelinux uefi-pxe uefi-ipxe"

# Fills $LAB/boot with loaders from Debian packages and the cached kernel/initrd.
populate_boot_dir() {
  local b=$LAB/boot
  mkdir -p "$b/k"
  cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi /usr/lib/ipxe/ipxe.efi "$b/"
  cp /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 "$b/"
  cp "$CACHE/kernel/vmlinuz" "$CACHE/kernel/initrd.img" "$b/k/"
}

write_boot_profiles() {
  local args="console=ttyS0 no_timer_check panic=-1 loglevel=4"
  cat > "$LAB/conf/profiles/netboot.toml" <<TOML
boot = "ipxe"
kernel = "k/vmlinuz"
initrd = "k/initrd.img"
args = "$args"
TOML
  cat > "$LAB/conf/profiles/pxelinux.toml" <<TOML
boot = "pxelinux"
kernel = "k/vmlinuz"
initrd = "k/initrd.img"
args = "$args"
TOML
}

mode_mac() {
  case $1 in
    bios-ipxe) echo 52:54:00:77:00:01 ;; bios-pxelinux) echo 52:54:00:77:00:02 ;;
    uefi-pxe) echo 52:54:00:77:00:03 ;; uefi-ipxe) echo 52:54:00:77:00:04 ;;
    bios-live) echo 52:54:00:77:00:05 ;;
    bios-nfs1) echo 52:54:00:77:00:11 ;; bios-nfs2) echo 52:54:00:77:00:12 ;;
    bios-nfs3) echo 52:54:00:77:00:13 ;; bios-nfs4) echo 52:54:00:77:00:14 ;;
    bios-nfs9) echo 52:54:00:77:00:19 ;; bios-pool1) echo 52:54:00:77:00:21 ;;
    *) echo "unknown mode $1" >&2; return 1 ;;
  esac
}

# add_boot_machine MODE IPSUFFIX: a machine file whose kernel args carry this run's marker.
add_boot_machine() {
  local mode=$1 n=$2 profile=netboot
  [ "$mode" = bios-pxelinux ] && profile=pxelinux
  cat > "$LAB/conf/machines/vm-$mode.toml" <<TOML
mac = "$(mode_mac "$mode")"
ip = "$NET.$n"
hostname = "vm-$mode"
profile = "$profile"
args = "pxl_marker=$RUN-$mode"
TOML
}

qemu_accel() {
  # Nested kvm_pvm hangs firmware; real VT-x hosts can use KVM (LAB.md).
  if [ -e /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && [ -z "${PXELATOR_TCG:-}" ]; then echo kvm; else echo tcg; fi
}

# start_vm MODE: starts a VM on a new tap, its serial console in $LAB/serial-MODE.log; sets
# VM_PID, VM_TAP and VM_START (ns). VM_MEM sets the RAM (MB), VM_MAC another MAC than the mode's,
# VM_DISK a raw file given to the VM as its virtio disk (/dev/vda), VM_CPU a -cpu model (e.g. max:
# Ceph's erasure-code plugins use instructions TCG's default CPU model lacks).
start_vm() {
  local mode=$1 mac tap serial machine dev disk=()
  [ -n "${VM_DISK:-}" ] && disk=(-drive "file=$VM_DISK,if=virtio,format=raw")
  mac=${VM_MAC:-$(mode_mac "$mode")}; tap=t${mode//-/}; tap=${tap:0:12}
  serial=$LAB/serial-$mode.log
  rm -f "$serial"
  ns "$SRV" ip link del "$tap" 2>/dev/null || true
  add_tap "$tap"
  case $mode in
    bios-*) machine=(-machine pc,graphics=off); dev=(-device "e1000,netdev=n0,mac=$mac") ;;
    uefi-*)
      cp /usr/share/OVMF/OVMF_VARS_4M.fd "$LAB/vars-$mode.fd"
      machine=(-machine q35 -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
               -drive "if=pflash,format=raw,unit=1,file=$LAB/vars-$mode.fd")
      if [ "$mode" = uefi-pxe ]; then dev=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=")
      else dev=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=/usr/lib/ipxe/qemu/efi-virtio.rom"); fi ;;
  esac
  VM_START=$(date +%s%N)
  VM_TAP=$tap
  VM_PID=$(ns_bg "$SRV" "$LAB/qemu-$mode.log" qemu-system-x86_64 -accel "$(qemu_accel)" ${VM_CPU:+-cpu "$VM_CPU"} -m "${VM_MEM:-512}" -nodefaults -no-reboot \
    -display none -serial "file:$serial" "${machine[@]}" -boot n \
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" "${dev[@]}" "${disk[@]}")
}

# stop_vm: waits up to 10 s for the VM of the last start_vm to power off, then kills it.
stop_vm() {
  local qpid=$VM_PID
  for _ in $(seq 1 20); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
  kill -TERM -- "-$qpid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.25; done
  ns "$SRV" ip link del "$VM_TAP" 2>/dev/null || true
}

# boot_vm MODE TIMEOUT: boots a VM on a new tap; returns 0 when the marker shows on serial
# ($BOOT_MARKER if set, else this run's initramfs marker). VM_MEM sets the RAM (MB).
# Sets BOOT_SECS to the seconds from QEMU start to the marker.
boot_vm() {
  local mode=$1 timeout=${2:-240} serial=$LAB/serial-$1.log
  start_vm "$mode"
  local start=$VM_START
  local ok=1
  if wait_for "$serial" "${BOOT_MARKER:-PXELATOR-BOOTED marker=$RUN-$mode}" "$timeout"; then ok=0; fi
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  BOOT_SECS=$(printf "%d.%01d" $((ms / 1000)) $((ms % 1000 / 100)))
  # The initramfs powers off; give QEMU a moment to exit by itself, then make sure.
  stop_vm
  return $ok
}
