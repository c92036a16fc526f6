# recipe: a Debian package installed
# param package: the package's name, e.g. htop
#
# From the cookbook: "install that something also on this other machine".
check() {
    [ "$(dpkg-query -W -f '${db:Status-Status}' -- "$package" 2>/dev/null)" = installed ]
}
apply() {
    case "$package" in
        *[!a-z0-9.+-]*|'') echo "not a package name: $package" >&2; return 1 ;;
    esac
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -- "$package"
}
