//! GUID partition tables: the primary header (LBA 1) and its partition entries, read from the
//! first sectors of a disk or disk image, with both CRC32s checked. Used by
//! `pxelator appliance update` to find the system slot inside an appliance image.
use thiserror::Error;

pub const SECTOR: u64 = 512;
/// Bytes that hold the protective MBR, the header and up to 128 entries of 128 bytes.
pub const HEAD_BYTES: usize = 34 * SECTOR as usize;
/// More entries than any real table uses; bounds what a hostile image can make us read.
const MAX_ENTRIES: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as in /dev/vda<N>.
    pub number: u32,
    /// The GPT partition name (PARTLABEL).
    pub name: String,
    pub first_lba: u64,
    pub last_lba: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GptError {
    #[error("not a GPT disk image: no \"EFI PART\" signature at LBA 1")]
    NoSignature,
    #[error("GPT header: {0}")]
    BadHeader(String),
    #[error("GPT header CRC32 mismatch (the image is damaged)")]
    HeaderCrc,
    #[error("GPT partition entries CRC32 mismatch (the image is damaged)")]
    EntriesCrc,
    #[error("GPT partition entries lie beyond the {0} bytes read: not a table this tool writes")]
    EntriesTooFar(usize),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The partitions in `head` (the disk's first bytes: at least the header sector, and the
/// entries wherever the header puts them), in table order, unused entries skipped.
pub fn parse(head: &[u8]) -> Result<Vec<Partition>, GptError> {
    let hdr_at = SECTOR as usize;
    if head.len() < hdr_at + 92 || &head[hdr_at..hdr_at + 8] != b"EFI PART" {
        return Err(GptError::NoSignature);
    }
    let hdr = &head[hdr_at..];
    let hdr_size = u32_at(hdr, 12) as usize;
    if !(92..=SECTOR as usize).contains(&hdr_size) {
        return Err(GptError::BadHeader(format!("header size {hdr_size}")));
    }
    let mut copy = hdr[..hdr_size].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != u32_at(hdr, 16) {
        return Err(GptError::HeaderCrc);
    }
    let entries_lba = u64_at(hdr, 72);
    let count = u32_at(hdr, 80);
    let entry_size = u32_at(hdr, 84) as usize;
    if count > MAX_ENTRIES {
        return Err(GptError::BadHeader(format!(
            "{count} entries (at most {MAX_ENTRIES})"
        )));
    }
    if !(128..=4096).contains(&entry_size) || !entry_size.is_power_of_two() {
        return Err(GptError::BadHeader(format!("entry size {entry_size}")));
    }
    let start = usize::try_from(entries_lba.saturating_mul(SECTOR)).unwrap_or(usize::MAX);
    let end = start.saturating_add(count as usize * entry_size);
    if entries_lba < 2 || end > head.len() {
        return Err(GptError::EntriesTooFar(head.len()));
    }
    let table = &head[start..end];
    if crc32fast::hash(table) != u32_at(hdr, 88) {
        return Err(GptError::EntriesCrc);
    }
    let mut parts = Vec::new();
    for (i, e) in table.chunks(entry_size).enumerate() {
        if e[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let (first_lba, last_lba) = (u64_at(e, 32), u64_at(e, 40));
        if last_lba < first_lba {
            return Err(GptError::BadHeader(format!(
                "partition {} ends (LBA {last_lba}) before it starts (LBA {first_lba})",
                i + 1
            )));
        }
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        parts.push(Partition {
            number: i as u32 + 1,
            name: String::from_utf16_lossy(&units),
            first_lba,
            last_lba,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as sgdisk writes one: header at LBA 1, 128 entries from LBA 2.
    pub fn table(parts: &[(&str, u64, u64)]) -> Vec<u8> {
        let mut d = vec![0u8; HEAD_BYTES];
        let mut entries = vec![0u8; 128 * 128];
        for (i, (name, first, last)) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(&[0xaf; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        d[1024..1024 + entries.len()].copy_from_slice(&entries);
        let h = &mut d[512..1024];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        d
    }

    #[test]
    fn reads_names_and_extents() {
        let d = table(&[("esp", 2048, 133119), ("sys-a", 133120, 1443839)]);
        let p = parse(&d).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].name, "sys-a");
        assert_eq!(p[1].number, 2);
        assert_eq!(p[1].offset(), 133120 * 512);
        assert_eq!(p[1].size(), (1443839 - 133120 + 1) * 512);
    }

    #[test]
    fn damage_is_refused_not_guessed_around() {
        let good = table(&[("sys-a", 2048, 4095)]);
        let mut entry_flip = good.clone();
        entry_flip[1024 + 60] ^= 1;
        assert_eq!(parse(&entry_flip), Err(GptError::EntriesCrc));
        let mut hdr_flip = good.clone();
        hdr_flip[512 + 32] ^= 1;
        assert_eq!(parse(&hdr_flip), Err(GptError::HeaderCrc));
        assert_eq!(parse(&good[..600]), Err(GptError::NoSignature));
        assert_eq!(parse(&vec![0u8; HEAD_BYTES]), Err(GptError::NoSignature));
        // A header (with a valid CRC) that points its entries far into the disk.
        let mut far = good.clone();
        far[512 + 72..512 + 80].copy_from_slice(&1_000_000u64.to_le_bytes());
        far[512 + 16..512 + 20].fill(0);
        let crc = crc32fast::hash(&far[512..604]);
        far[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse(&far), Err(GptError::EntriesTooFar(HEAD_BYTES)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut d = table(&[("sys-a", 2048, 4095)]);
        for i in 0..2000usize {
            let at = 512 + (i * 7919) % (HEAD_BYTES - 512);
            d[at] = d[at].wrapping_add(i as u8 | 1);
            let _ = parse(&d);
        }
    }
}
