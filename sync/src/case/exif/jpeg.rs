//! Location metadata removed from a JPEG in place.
//!
//! Every segment keeps its marker, its length and its place; only payload
//! bytes change. That keeps the image data byte for byte where it was and
//! keeps valid every offset that points past the first image: phones store
//! further images (gain maps, depth maps) after the primary image's end and
//! find them through offsets in an APP2 "MPF" segment.

use super::{mentions_location, tiff, ExifError};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const APP1: u8 = 0xE1;
const APP13: u8 = 0xED;

const EXIF_ID: &[u8] = b"Exif\0";
const XMP_ID: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENSION_ID: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const PHOTOSHOP_ID: &[u8] = b"Photoshop 3.0\0";

/// Cleans the JPEG in `buf` and every JPEG stored right after it. Returns
/// whether anything was removed.
pub(super) fn strip(buf: &mut [u8]) -> Result<bool, ExifError> {
    if !buf.starts_with(&[0xFF, SOI]) {
        return Err(ExifError::WrongFormat("JPEG"));
    }
    let mut removed = false;
    let mut start = 0;
    loop {
        // Each image consumes at least its two-byte start marker, so this
        // loop ends.
        let end = strip_image(buf, start, &mut removed)?;
        if buf.get(end..end + 2) == Some(&[0xFF, SOI]) {
            start = end;
        } else {
            // Anything else after the end (a motion photo's video, a
            // vendor trailer) is not JPEG and is left as it is.
            return Ok(removed);
        }
    }
}

/// Walks the markers of the image starting at `start` the way decoders and
/// Exif readers do: bytes that are not a marker (scan data, padding) are
/// skipped up to the next 0xFF. Returns the position after its end marker,
/// or the buffer's length when the file ends first.
fn strip_image(buf: &mut [u8], start: usize, removed: &mut bool) -> Result<usize, ExifError> {
    let mut pos = start + 2;
    loop {
        let Some(ff) = buf
            .get(pos..)
            .and_then(|r| r.iter().position(|b| *b == 0xFF))
        else {
            return Ok(buf.len());
        };
        pos += ff;
        // Fill bytes: any number of 0xFF may precede a marker code.
        while buf.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let marker_at = pos;
        let Some(&code) = buf.get(pos + 1) else {
            return Ok(buf.len());
        };
        pos += 2;
        match code {
            EOI => return Ok(pos),
            // Stuffed zero and restart markers inside scan data, and
            // markers that carry no length.
            0x00 | 0x01 | 0xD0..=0xD7 | SOI => continue,
            _ => {}
        }
        let Some(len) = buf
            .get(pos..pos + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return Ok(buf.len());
        };
        if len < 2 {
            return Err(ExifError::BadLength { offset: marker_at });
        }
        // A segment cut short by the end of the file is cleaned as far as
        // it goes: a lenient reader might still read what is there, and
        // refusing it would refuse a photo a viewer shows.
        let end = (pos + len).min(buf.len());
        let payload = buf.get_mut(pos + 2..end).unwrap_or_default();
        *removed |= match code {
            APP1 => clean_app1(payload),
            APP13 => clean_app13(payload),
            _ => false,
        };
        pos += len;
    }
}

/// Exif loses its GPS IFD (or all of it when it cannot be read cleanly);
/// XMP that names a place is blanked. Returns whether anything changed.
fn clean_app1(payload: &mut [u8]) -> bool {
    if payload.starts_with(EXIF_ID) {
        // The identifier is "Exif" and two zeros; the TIFF data follows.
        let tiff = payload.get_mut(EXIF_ID.len() + 1..).unwrap_or_default();
        match tiff::strip_gps(tiff) {
            Ok(removed) => removed,
            // A structure that cannot be read precisely goes whole, so no
            // reader can find a position in it either.
            Err(_) => blank(payload),
        }
    } else if payload.starts_with(XMP_ID) {
        mentions_location(payload) && blank(payload)
    } else if payload.starts_with(XMP_EXTENSION_ID) {
        // Extended XMP is one packet cut into chunks at arbitrary bytes,
        // so a property's name and its value can sit in different chunks:
        // no chunk can be judged alone, and all of them go.
        blank(payload)
    } else {
        false
    }
}

/// Photoshop's IPTC block (APP13) holds city, province and country
/// fields; photos taken on a phone have none, edited ones may.
fn clean_app13(payload: &mut [u8]) -> bool {
    payload.starts_with(PHOTOSHOP_ID) && blank(payload)
}

/// Zeroes a segment's payload, identifier included, so readers see an
/// application segment that is nobody's. Returns true.
fn blank(payload: &mut [u8]) -> bool {
    payload.fill(0);
    true
}
