# recipe: a systemd service enabled and running
# param service: the unit, e.g. ssh.service
check() {
    systemctl is-enabled --quiet -- "$service" && systemctl is-active --quiet -- "$service"
}
apply() {
    systemctl enable --now -- "$service"
}
