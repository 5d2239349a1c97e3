//! Location metadata removed from a PNG by dropping whole chunks.
//!
//! A PNG is a signature and a list of chunks that point nowhere else, so a
//! chunk can go without touching any other; each chunk's CRC covers only
//! itself, so nothing is recomputed.

use super::{mentions_location, tiff, ExifError};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
/// ImageMagick's way to keep Exif, IPTC or XMP in a text chunk, as hex.
const RAW_PROFILE: &[u8] = b"Raw profile type ";

/// The PNG without the chunks that carry a location, or `None` when no
/// chunk does.
pub(super) fn strip(bytes: &[u8]) -> Result<Option<Vec<u8>>, ExifError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(ExifError::WrongFormat("PNG"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(SIGNATURE);
    let mut removed = false;
    let mut pos = SIGNATURE.len();
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + 8) else {
            // Fewer bytes than a chunk header: no reader makes a chunk of them.
            out.extend_from_slice(&bytes[pos..]);
            break;
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        // Length, type, data, CRC.
        let Some(end) = (pos + 12)
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
        else {
            // A chunk cut short by the end of the file: a metadata chunk
            // goes (a lenient reader might read what is there), anything
            // else is kept as it is.
            if is_metadata(&kind) {
                removed = true;
            } else {
                out.extend_from_slice(&bytes[pos..]);
            }
            break;
        };
        let data = &bytes[pos + 8..end - 4];
        if carries_location(&kind, data) {
            removed = true;
        } else {
            out.extend_from_slice(&bytes[pos..end]);
        }
        pos = end;
        if &kind == b"IEND" {
            // Bytes after the image's end are no chunk; kept as they are.
            out.extend_from_slice(&bytes[pos..]);
            break;
        }
    }
    Ok(removed.then_some(out))
}

/// Chunks that may hold a location: Exif and text (XMP, raw profiles).
fn is_metadata(kind: &[u8; 4]) -> bool {
    matches!(kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt")
}

fn carries_location(kind: &[u8; 4], data: &[u8]) -> bool {
    match kind {
        b"eXIf" => {
            // The chunk goes if the GPS IFD is in it, or if it cannot be
            // read cleanly (then no reader can be trusted to miss one).
            let mut copy = data.to_vec();
            tiff::strip_gps(&mut copy).unwrap_or(true)
        }
        b"tEXt" | b"zTXt" | b"iTXt" => text_carries_location(kind, data),
        _ => false,
    }
}

/// XMP in an `iTXt` chunk naming a place (or compressed, so it cannot be
/// read without inflating it), and ImageMagick's raw profiles.
fn text_carries_location(kind: &[u8; 4], data: &[u8]) -> bool {
    let keyword = data.split(|b| *b == 0).next().unwrap_or_default();
    if keyword.starts_with(RAW_PROFILE) {
        return true;
    }
    if keyword != XMP_KEYWORD {
        return false;
    }
    // iTXt: keyword, 0, compression flag, method, language, 0, translated
    // keyword, 0, text.
    let compressed =
        kind == b"zTXt" || (kind == b"iTXt" && data.get(keyword.len() + 1) == Some(&1));
    compressed || mentions_location(data)
}
