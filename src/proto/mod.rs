//! Wire formats: bytes ⇄ types. No sockets, no clocks; every decoder returns a typed error for
//! malformed input and is exercised by property tests and the fuzz targets in `fuzz/`.
pub mod dhcp;
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

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(super::hex(&[0, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::hex(&[]), "");
    }
}
