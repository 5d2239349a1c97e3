//! Location metadata removed from evidence before it is stored, so a
//! customer's home address does not travel with a damage photo (issue 11).
//!
//! [`strip_location`] is called by `Replica::attach_evidence` on the bytes
//! as the user picked them, before they are hashed: the hash names the
//! bytes without the location, and only those are kept.
//!
//! What goes, by format:
//!
//! - JPEG: the Exif GPS IFD (its entries and values become zeros, and the
//!   pointer to it leaves its IFD), so orientation, capture time and the
//!   rest of Exif stay; XMP that names a place (GPS, location, city,
//!   state, country properties), all extended XMP and Photoshop's IPTC
//!   block are blanked. Exif that cannot be read cleanly (offsets out of
//!   range, loops) is blanked whole. The same is done for JPEGs stored
//!   right after the first (a phone's gain or depth maps). Segments are
//!   changed in place, never moved: the output has the input's length and
//!   its image data is untouched. A segment cut short by the end of the
//!   file is cleaned as far as it goes.
//! - PNG: `eXIf` chunks holding a GPS IFD (or unreadable), XMP text chunks
//!   naming a place (or compressed), ImageMagick's raw profile chunks and
//!   any of these cut short by the end of the file are dropped.
//!
//! Known limits: WebP, GIF, HEIF, MP4 and QuickTime videos and PDF
//! documents are returned unchanged, location and all (a video's `©xyz`
//! atom, WebP's `EXIF` chunk, HEIF's Exif item). So are a location a
//! camera keeps in its MakerNote, an Exif block inside the embedded
//! thumbnail, and anything stored after a JPEG's end that is not a JPEG
//! (a motion photo's video).

mod jpeg;
mod png;
mod tiff;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

/// Why a photo could not be cleaned: its bytes are not of the type named,
/// or its structure is broken where no reader goes on. Such a file is
/// refused rather than stored with a location that might be readable.
/// Broken metadata in a readable file, and a file cut short, are cleaned
/// instead (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExifError {
    /// The bytes do not start as their media type says.
    #[error("the file is not a {0}: its first bytes say otherwise")]
    WrongFormat(&'static str),
    /// A JPEG segment declares a length too short to hold its own length;
    /// decoders stop there.
    #[error("the JPEG is damaged: the segment at byte {offset} declares a length below 2")]
    BadLength {
        /// Where the segment's marker is.
        offset: usize,
    },
}

/// Returns `bytes` with location metadata removed, and whether anything was
/// removed (then the bytes are a new, owned copy). `media_type` is what
/// `blob::sniff` found; types this module does not handle come back
/// unchanged with `false` (see the module's known limits). Pure: no IO,
/// and no input makes it panic.
pub fn strip_location<'a>(
    bytes: &'a [u8],
    media_type: &str,
) -> Result<(Cow<'a, [u8]>, bool), ExifError> {
    match media_type {
        "image/jpeg" => {
            let mut out = bytes.to_vec();
            Ok(if jpeg::strip(&mut out)? {
                (Cow::Owned(out), true)
            } else {
                (Cow::Borrowed(bytes), false)
            })
        }
        "image/png" => Ok(match png::strip(bytes)? {
            Some(out) => (Cow::Owned(out), true),
            None => (Cow::Borrowed(bytes), false),
        }),
        _ => Ok((Cow::Borrowed(bytes), false)),
    }
}

/// Property names (and fragments of them) that put a place in XMP: Exif's
/// `GPSLatitude`..., IPTC's `LocationCreated`/`LocationShown`/`Location`,
/// Photoshop's `City`, `State`, `Country`. A false match only removes
/// metadata nobody needs for a claim.
const PLACE_WORDS: &[&[u8]] = &[b"GPS", b"Location", b"City", b"State", b"Country"];

/// Whether metadata text names a place.
fn mentions_location(text: &[u8]) -> bool {
    PLACE_WORDS
        .iter()
        .any(|w| text.windows(w.len()).any(|x| x == *w))
}
