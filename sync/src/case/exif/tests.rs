//! Photos made byte by byte (`fuzzing::photos`), read back by an
//! independent Exif reader (`kamadak-exif`).

use super::*;
use crate::fuzzing::photos::{self, Order, APP1};
use exif::{Context, In, Reader, Tag};
use proptest::prelude::*;

/// What an independent reader finds in a photo's Exif.
#[derive(Debug, Default)]
struct Read {
    gps_fields: usize,
    orientation: Option<u32>,
    date_time: bool,
}

/// Reads Exif from a JPEG or PNG as a viewer would; fields of a broken
/// structure still count (the reader goes on after errors).
fn read(bytes: &[u8]) -> Read {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    let exif = match reader.read_from_container(&mut std::io::Cursor::new(bytes)) {
        Ok(e) => e,
        Err(exif::Error::PartialResult(p)) => p.into_inner().0,
        Err(_) => return Read::default(),
    };
    Read {
        gps_fields: exif
            .fields()
            .filter(|f| f.tag.context() == Context::Gps)
            .count(),
        orientation: exif
            .get_field(Tag::Orientation, In::PRIMARY)
            .and_then(|f| f.value.get_uint(0)),
        date_time: exif.get_field(Tag::DateTime, In::PRIMARY).is_some(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn strip_jpeg(bytes: &[u8]) -> (Vec<u8>, bool) {
    let (out, removed) = strip_location(bytes, "image/jpeg").unwrap();
    (out.into_owned(), removed)
}

/// Where the image data (everything after the metadata segments) starts.
fn image_start(jpeg: &[u8]) -> usize {
    let dqt = jpeg.windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
    assert!(dqt > 2);
    dqt
}

#[test]
fn gps_goes_while_orientation_and_capture_time_stay() {
    for order in Order::BOTH {
        let photo = photos::jpeg_with_location(order);
        let before = read(&photo);
        assert_eq!(
            before.gps_fields, 5,
            "{order:?}: the photo holds a location"
        );
        assert_eq!(before.orientation, Some(6));

        let (out, removed) = strip_jpeg(&photo);
        assert!(removed, "{order:?}");
        let after = read(&out);
        assert_eq!(after.gps_fields, 0, "{order:?}: no GPS field is read");
        assert_eq!(after.orientation, Some(u32::from(photos::ORIENTATION)));
        assert!(after.date_time, "{order:?}: capture time is kept");
        // Not only unreachable: the coordinates are gone from the bytes.
        for coordinate in [photos::LATITUDE, photos::LONGITUDE] {
            assert!(contains(&photo, &order.rational_bytes(&coordinate)));
            assert!(!contains(&out, &order.rational_bytes(&coordinate)));
        }
        // Same length, and the image itself is untouched.
        assert_eq!(out.len(), photo.len());
        let start = image_start(&photo);
        assert_eq!(out[start..], photo[start..]);
    }
}

#[test]
fn a_photo_without_a_location_comes_back_as_it_was() {
    let bare = photos::jpeg(&[]);
    for order in Order::BOTH {
        let no_gps = photos::jpeg(&[(APP1, &photos::phone_exif(order, false))]);
        for photo in [&bare, &no_gps] {
            let (out, removed) = strip_location(photo, "image/jpeg").unwrap();
            assert!(!removed);
            assert!(matches!(out, Cow::Borrowed(_)), "no copy is made");
            assert_eq!(&out[..], &photo[..]);
        }
        assert_eq!(read(&no_gps).orientation, Some(6));
    }
}

#[test]
fn stripping_twice_is_stripping_once() {
    for order in Order::BOTH {
        let (once, _) = strip_jpeg(&photos::jpeg_with_location(order));
        let (twice, again) = strip_jpeg(&once);
        assert!(!again);
        assert_eq!(twice, once);
    }
}

#[test]
fn the_gps_pointer_is_gone_from_ifd0_and_the_gps_ifd_is_empty() {
    let order = Order::Little;
    let photo = photos::jpeg_with_location(order);
    let (out, _) = strip_jpeg(&photo);
    // IFD0 starts 8 bytes into the TIFF, which starts after the segment
    // header (4) and "Exif\0\0" (6) behind the start marker (2).
    let ifd0 = 2 + 4 + 6 + 8;
    assert_eq!(photo[ifd0..ifd0 + 2], [3, 0], "orientation, time, GPS");
    assert_eq!(out[ifd0..ifd0 + 2], [2, 0], "orientation, time");
    // The third entry's bytes (and the next-IFD offset's old place) are
    // zeros now, not a stale copy of the pointer.
    let third = ifd0 + 2 + 2 * 12;
    assert_eq!(out[third..third + 12 + 4], [0; 16]);
    assert!(!contains(&out[..image_start(&out)], &[0x25, 0x88]));
}

#[test]
fn exif_that_cannot_be_read_goes_whole() {
    for order in Order::BOTH {
        let good = order.tiff(&order.ifd0(), Some(&order.gps_ifd()));
        // The GPS pointer (the last entry of IFD0) points past the end.
        let mut far = good.clone();
        let at = 8 + 2 + 2 * 12 + 8;
        far[at..at + 4].copy_from_slice(&order.long(0, 60_000).value);
        // IFD0's next offset points back at IFD0: a loop.
        let mut looped = good.clone();
        let next = 8 + 2 + 3 * 12;
        looped[next..next + 4].copy_from_slice(&order.long(0, 8).value);
        // IFD0 itself is out of range.
        let mut lost = good.clone();
        lost[4..8].copy_from_slice(&order.long(0, 9_999).value);
        // A GPS value's offset runs past the end.
        let mut value_far = good.clone();
        let gps = good.len() - 48 - 66;
        let latitude_offset = gps + 2 + 2 * 12 + 8;
        value_far[latitude_offset..latitude_offset + 4]
            .copy_from_slice(&order.long(0, 60_000).value);

        for (what, tiff) in [
            ("far", far),
            ("looped", looped),
            ("lost", lost),
            ("value_far", value_far),
        ] {
            let photo = photos::jpeg(&[(APP1, &photos::exif_payload(&tiff))]);
            let (out, removed) = strip_jpeg(&photo);
            assert!(removed, "{order:?} {what}");
            assert!(!contains(&out, b"Exif"), "{order:?} {what}: blanked");
            assert_eq!(read(&out).gps_fields, 0);
            assert_eq!(out.len(), photo.len());
            let start = image_start(&photo);
            assert_eq!(out[start..], photo[start..]);
        }
    }
}

#[test]
fn xmp_naming_a_place_is_blanked_and_other_xmp_stays() {
    let located =
        photos::xmp_payload("exif:GPSLatitude=\"31,14.04N\" exif:GPSLongitude=\"121,28.76E\"");
    let plain = photos::xmp_payload("xmp:CreatorTool=\"Camera 1.0\"");
    let photo = photos::jpeg(&[(APP1, &located), (APP1, &plain)]);
    let (out, removed) = strip_jpeg(&photo);
    assert!(removed);
    assert!(!contains(&out, b"GPSLatitude"));
    assert!(!contains(&out, b"121,28.76E"));
    assert!(contains(&out, &plain), "XMP without a place is kept");

    let photo = photos::jpeg(&[(APP1, &plain)]);
    let (out, removed) = strip_location(&photo, "image/jpeg").unwrap();
    assert!(!removed);
    assert!(contains(&out, &plain));
}

#[test]
fn a_second_image_stored_after_the_first_is_cleaned_too() {
    // Phones put gain maps and depth maps after the primary image.
    for order in Order::BOTH {
        let first = photos::jpeg_with_location(order);
        let second = photos::jpeg_with_location(order);
        let both = [first.clone(), second].concat();
        let (out, removed) = strip_jpeg(&both);
        assert!(removed);
        assert_eq!(read(&out[first.len()..]).gps_fields, 0);
        assert_eq!(read(&out[first.len()..]).orientation, Some(6));
        // A trailer that is not a JPEG (a motion photo's video) stays.
        let trailer = b"\0\0\0\x18ftypmp42 GPS-looking bytes";
        let with_video = [first.clone(), trailer.to_vec()].concat();
        let (out, _) = strip_jpeg(&with_video);
        assert_eq!(&out[first.len()..], trailer);
    }
}

#[test]
fn png_exif_with_a_location_is_dropped_and_the_rest_kept() {
    for order in Order::BOTH {
        let tiff = order.tiff(&order.ifd0(), Some(&order.gps_ifd()));
        let xmp = b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta exif:GPSLatitude=\"31,14N\"/>";
        let note = b"Comment\0scratch on the left door";
        let photo = photos::png(&[(b"eXIf", &tiff), (b"iTXt", xmp), (b"tEXt", note)]);
        assert_eq!(read(&photo).gps_fields, 5, "the reader finds the PNG's GPS");

        let (out, removed) = strip_location(&photo, "image/png").unwrap();
        assert!(removed);
        assert_eq!(read(&out).gps_fields, 0);
        assert!(!contains(&out, b"eXIf"));
        assert!(!contains(&out, b"GPSLatitude"));
        assert!(contains(&out, note), "other text stays");
        assert!(contains(&out, b"IDAT") && out.ends_with(b"IEND\xAE\x42\x60\x82"));

        let clean = order.tiff(&order.ifd0(), None);
        let photo = photos::png(&[(b"eXIf", &clean)]);
        let (out, removed) = strip_location(&photo, "image/png").unwrap();
        assert!(!removed);
        assert_eq!(&out[..], &photo[..]);
        assert_eq!(read(&out).orientation, Some(6));
    }
}

#[test]
fn other_media_types_come_back_unchanged() {
    // Known limit: only JPEG and PNG are cleaned.
    let photo = photos::jpeg_with_location(Order::Little);
    for media in ["image/webp", "image/heif", "video/mp4", "application/pdf"] {
        let (out, removed) = strip_location(&photo, media).unwrap();
        assert!(!removed, "{media}");
        assert_eq!(&out[..], &photo[..]);
    }
}

#[test]
fn a_file_of_another_type_or_a_broken_segment_is_an_error() {
    assert_eq!(
        strip_location(b"GIF89a", "image/jpeg").unwrap_err(),
        ExifError::WrongFormat("JPEG")
    );
    assert_eq!(
        strip_location(b"\xFF\xD8", "image/png").unwrap_err(),
        ExifError::WrongFormat("PNG")
    );
    let bad = [0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01, 0x00];
    let err = strip_location(&bad, "image/jpeg").unwrap_err();
    assert_eq!(err, ExifError::BadLength { offset: 2 });
    assert_eq!(
        err.to_string(),
        "the JPEG is damaged: the segment at byte 2 declares a length below 2"
    );
}

#[test]
fn a_file_cut_short_is_cleaned_as_far_as_it_goes() {
    for order in Order::BOTH {
        let photo = photos::jpeg_with_location(order);
        // Cut inside the Exif segment, after the GPS IFD's latitude: the
        // structure no longer reads, so the segment is blanked.
        let cut = &photo[..180];
        assert!(contains(cut, &order.rational_bytes(&photos::LATITUDE)));
        let (out, removed) = strip_jpeg(cut);
        assert!(removed, "{order:?}");
        assert_eq!(out.len(), cut.len());
        assert!(!contains(&out, b"Exif"));
        assert!(!contains(&out, &order.rational_bytes(&photos::LATITUDE)));
        // Cut inside the scan data: the metadata before it is cleaned.
        let cut = &photo[..photo.len() - 3];
        let (out, removed) = strip_jpeg(cut);
        assert!(removed);
        assert_eq!(out.len(), cut.len());
        assert_eq!(read(&out).orientation, Some(6));

        let tiff = order.tiff(&order.ifd0(), Some(&order.gps_ifd()));
        let png = photos::png(&[(b"eXIf", &tiff)]);
        let cut = &png[..60];
        let (out, removed) = strip_location(cut, "image/png").unwrap();
        assert!(removed);
        assert_eq!(&out[..], &cut[..33], "signature and header are kept");
    }
    // A bare JFIF header, as some tests attach: nothing to clean.
    let header = [
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    assert_eq!(
        strip_location(&header, "image/jpeg").unwrap(),
        (Cow::Borrowed(&header[..]), false)
    );
}

/// A GPS photo with some bytes replaced and maybe cut short.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let photos = prop_oneof![
        Just(photos::jpeg_with_location(Order::Little)),
        Just(photos::jpeg_with_location(Order::Big)),
    ];
    (
        photos,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut photo, edits, cut, do_cut)| {
            for (at, byte) in edits {
                let i = at.index(photo.len());
                photo[i] = byte;
            }
            if do_cut {
                photo.truncate(cut.index(photo.len()));
            }
            photo
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        crate::fuzzing::strip_location_holds(&data);
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend_from_slice(&data);
        crate::fuzzing::strip_location_holds(&jpeg);
    }

    #[test]
    fn a_damaged_photo_never_keeps_a_readable_location(photo in damaged()) {
        crate::fuzzing::strip_location_holds(&photo);
        if let Ok((out, _)) = strip_location(&photo, "image/jpeg") {
            prop_assert_eq!(read(&out).gps_fields, 0);
        }
    }
}
