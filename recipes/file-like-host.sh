# recipe: a file with the same content as on another host (its last pulled backup)
# param path: the file, an absolute path
# param content_b64: the wanted content, base64 (pxelator recipe capture fills this in a recipe of its own)
# param mode: the mode, octal
# default mode: 644
#
# `pxelator recipe capture HOST:/path --as NAME` writes a recipe with the content built in;
# this one takes it as a parameter, for scripts that already have it.
check() {
    [ -f "$path" ] &&
    [ "$(printf '%s\n' "$content_b64" | base64 -d | sha256sum)" = "$(sha256sum < "$path")" ] &&
    [ "$(stat -c %a "$path")" = "$(printf %o "0$mode")" ]
}
apply() {
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content_b64" | base64 -d > "$path.pxelator-new"
    chmod "$mode" "$path.pxelator-new"
    mv -f "$path.pxelator-new" "$path"
}
