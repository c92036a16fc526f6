//! pxelator's wire formats: bytes ⇄ types for DHCP (with the request/reply types decisions
//! use), TFTP and syslog, the MAC address type, and the two disk formats the appliance updater reads
//! (GPT, GRUB's environment block). No sockets, no clocks, nothing from the
//! rest of pxelator (a crate of its own, so that stays true); every decoder returns a typed
//! error for malformed input and is exercised by property tests and the fuzz targets in
//! `fuzz/`. pxelator uses it as `pxelator::proto`.
pub mod dhcp;
pub mod gpt;
pub mod grubenv;
pub mod mac;
pub mod syslog;
pub mod tftp;

/// Lower-case hex of `bytes` (digests, tokens, packets kept in events).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes of a hex string (either case); None for an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(super::hex(&[0, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::hex(&[]), "");
        assert_eq!(super::unhex("000FabfF"), Some(vec![0, 0x0f, 0xab, 0xff]));
        assert_eq!(super::unhex("abc"), None);
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("+1"), None);
    }
}
