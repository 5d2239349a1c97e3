//! What a piece of evidence's bytes are: their SHA-256 and their media
//! type, read from the bytes themselves (never from a file name, so an
//! executable renamed `.jpg` is not a photo).

use sha2::{Digest, Sha256};

/// Media types a piece of evidence may have: photos, videos, PDF
/// documents.
pub const ALLOWED: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/heif",
    "video/mp4",
    "video/quicktime",
    "application/pdf",
];

/// SHA-256 of `bytes`, raw and as lowercase hex.
pub fn sha256(bytes: &[u8]) -> ([u8; 32], String) {
    let d: [u8; 32] = Sha256::digest(bytes).into();
    let hex = d.iter().map(|b| format!("{b:02x}")).collect();
    (d, hex)
}

/// The media type of `bytes`, if it is one evidence may have.
pub fn sniff(bytes: &[u8]) -> Result<&'static str, String> {
    let found = infer::get(bytes).map(|t| t.mime_type());
    match found {
        Some(m) => ALLOWED
            .iter()
            .find(|a| **a == m)
            .copied()
            .ok_or_else(|| format!("the file is {m}, not a photo, video or PDF document")),
        None => Err(
            "the file is not a photo, video or PDF document (its bytes match no known format)"
                .into(),
        ),
    }
}

/// The usual file extension of an evidence media type, for naming a
/// download so it opens in the right program.
pub fn extension(media_type: &str) -> &'static str {
    match media_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/heif" => "heic",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

/// Decodes a hex SHA-256.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if !super::evidence::is_hash(hex) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_type_has_its_own_extension() {
        let exts: std::collections::BTreeSet<_> = ALLOWED.iter().map(|m| extension(m)).collect();
        assert_eq!(exts.len(), ALLOWED.len());
        assert!(!exts.contains("bin"));
        assert_eq!(extension("application/x-executable"), "bin");
    }

    #[test]
    fn types_come_from_the_bytes_not_the_name() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
        assert_eq!(sniff(&jpeg), Ok("image/jpeg"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Ok("application/pdf"));
        let elf = [
            0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
        ];
        assert!(sniff(&elf).is_err(), "an executable is not a photo");
        assert!(sniff(b"hello").is_err());
    }

    #[test]
    fn hashes_round_trip() {
        let (raw, hex) = sha256(b"abc");
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hash(&hex), Some(raw));
        assert_eq!(parse_hash("xyz"), None);
    }
}
