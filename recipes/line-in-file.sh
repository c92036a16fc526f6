# recipe: a line present in a text file (added at its end when missing)
# param file: the file, an absolute path (made if missing)
# param line: the whole line, exactly as it must appear
#
# From the cookbook: "add this to /etc/hosts on every kiosk". Only the missing line is added;
# the rest of the file is left as the host has it.
check() {
    [ -f "$file" ] && grep -qxF -- "$line" "$file"
}
apply() {
    # A file that does not end in a newline gets one first, so the line stays a line.
    if [ -s "$file" ] && [ "$(tail -c 1 "$file" | od -An -c | tr -d ' ')" != '\n' ]; then
        printf '\n' >> "$file"
    fi
    printf '%s\n' "$line" >> "$file"
}
