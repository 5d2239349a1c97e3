//! Small photos made byte by byte, with and without a location, for the
//! tests of `case::exif` and as seeds for its fuzz target. Made here rather
//! than read from files so each test says what its photo holds.

/// Orientation 6: the camera was turned; viewers rotate by 90 degrees.
pub const ORIENTATION: u16 = 6;
/// Capture time as Exif writes it.
pub const DATE_TIME: &[u8] = b"2024:05:01 10:30:00\0";
/// Latitude 31 deg 14' 2.5" as three rationals.
pub const LATITUDE: [(u32, u32); 3] = [(31, 1), (14, 1), (25, 10)];
/// Longitude 121 deg 28' 45.5" as three rationals.
pub const LONGITUDE: [(u32, u32); 3] = [(121, 1), (28, 1), (455, 10)];

/// One IFD entry to write; `value` is already in the TIFF's byte order.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Tag.
    pub tag: u16,
    /// TIFF type (3 SHORT, 4 LONG, 5 RATIONAL...).
    pub typ: u16,
    /// Number of values.
    pub count: u32,
    /// The values' bytes.
    pub value: Vec<u8>,
}

/// Byte order of a TIFF being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `II`, least significant byte first (most phones).
    Little,
    /// `MM`, most significant byte first.
    Big,
}

impl Order {
    /// Both byte orders, for tests that must hold for each.
    pub const BOTH: [Order; 2] = [Order::Little, Order::Big];

    fn u16(self, v: u16) -> [u8; 2] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    fn u32(self, v: u32) -> [u8; 4] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }

    /// A SHORT entry.
    pub fn short(self, tag: u16, v: u16) -> Entry {
        Entry {
            tag,
            typ: 3,
            count: 1,
            value: self.u16(v).to_vec(),
        }
    }

    /// An ASCII entry (`text` includes its closing zero).
    pub fn ascii(self, tag: u16, text: &[u8]) -> Entry {
        Entry {
            tag,
            typ: 2,
            count: text.len() as u32,
            value: text.to_vec(),
        }
    }

    /// A RATIONAL entry.
    pub fn rationals(self, tag: u16, values: &[(u32, u32)]) -> Entry {
        Entry {
            tag,
            typ: 5,
            count: values.len() as u32,
            value: self.rational_bytes(values),
        }
    }

    /// Rationals as they are stored in this byte order.
    pub fn rational_bytes(self, values: &[(u32, u32)]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|(n, d)| self.u32(*n).into_iter().chain(self.u32(*d)))
            .collect()
    }

    /// A LONG entry.
    pub fn long(self, tag: u16, v: u32) -> Entry {
        Entry {
            tag,
            typ: 4,
            count: 1,
            value: self.u32(v).to_vec(),
        }
    }

    /// A TIFF with `ifd0` and, when given, a GPS IFD that IFD0 points to
    /// (the pointer entry is added last, as its tag is the highest).
    pub fn tiff(self, ifd0: &[Entry], gps: Option<&[Entry]>) -> Vec<u8> {
        let mut out = match self {
            Order::Little => b"II\x2A\x00".to_vec(),
            Order::Big => b"MM\x00\x2A".to_vec(),
        };
        out.extend_from_slice(&self.u32(8));
        let mut entries = ifd0.to_vec();
        if gps.is_some() {
            entries.push(self.long(0x8825, 0));
        }
        let pointer_at = self.write_ifd(&mut out, &entries);
        if let Some(gps) = gps {
            let at = self.u32(out.len() as u32);
            out[pointer_at..pointer_at + 4].copy_from_slice(&at);
            self.write_ifd(&mut out, gps);
        }
        out
    }

    /// Writes one IFD and its out-of-line values at the end of `out`;
    /// returns the position of its last entry's value.
    fn write_ifd(self, out: &mut Vec<u8>, entries: &[Entry]) -> usize {
        let start = out.len();
        let data_at = start + 2 + 12 * entries.len() + 4;
        let mut data: Vec<u8> = Vec::new();
        let mut last_value = 0;
        out.extend_from_slice(&self.u16(entries.len() as u16));
        for e in entries {
            out.extend_from_slice(&self.u16(e.tag));
            out.extend_from_slice(&self.u16(e.typ));
            out.extend_from_slice(&self.u32(e.count));
            last_value = out.len();
            if e.value.len() <= 4 {
                let mut v = e.value.clone();
                v.resize(4, 0);
                out.extend_from_slice(&v);
            } else {
                out.extend_from_slice(&self.u32((data_at + data.len()) as u32));
                data.extend_from_slice(&e.value);
                // Values start on even offsets.
                if data.len() % 2 == 1 {
                    data.push(0);
                }
            }
        }
        out.extend_from_slice(&self.u32(0));
        out.extend_from_slice(&data);
        last_value
    }

    /// IFD0 of a phone photo: orientation and capture time.
    pub fn ifd0(self) -> Vec<Entry> {
        vec![
            self.short(0x0112, ORIENTATION),
            self.ascii(0x0132, DATE_TIME),
        ]
    }

    /// A GPS IFD: version, latitude and longitude with their references.
    pub fn gps_ifd(self) -> Vec<Entry> {
        vec![
            Entry {
                tag: 0x0000,
                typ: 1,
                count: 4,
                value: vec![2, 3, 0, 0],
            },
            self.ascii(0x0001, b"N\0"),
            self.rationals(0x0002, &LATITUDE),
            self.ascii(0x0003, b"E\0"),
            self.rationals(0x0004, &LONGITUDE),
        ]
    }
}

/// The payload of an Exif APP1 segment holding `tiff`.
pub fn exif_payload(tiff: &[u8]) -> Vec<u8> {
    [b"Exif\0\0".as_slice(), tiff].concat()
}

/// An APP1 Exif payload as a phone writes it: orientation, capture time
/// and, if `gps`, a GPS IFD.
pub fn phone_exif(order: Order, gps: bool) -> Vec<u8> {
    let gps_ifd = order.gps_ifd();
    exif_payload(&order.tiff(&order.ifd0(), gps.then_some(gps_ifd.as_slice())))
}

/// An XMP packet as an APP1 payload, with `properties` inside its
/// description element.
pub fn xmp_payload(properties: &str) -> Vec<u8> {
    let packet = format!(
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF \
         xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
         <rdf:Description xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" \
         xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" {properties}/>\
         </rdf:RDF></x:xmpmeta>"
    );
    [
        b"http://ns.adobe.com/xap/1.0/\0".as_slice(),
        packet.as_bytes(),
    ]
    .concat()
}

/// The marker of the APP1 segment (Exif, XMP).
pub const APP1: u8 = 0xE1;

/// The image part of [`jpeg`]: an 8x8 baseline greyscale JPEG whose
/// Huffman tables hold one code each, so the whole scan is two bits.
fn image() -> Vec<u8> {
    let mut out = Vec::new();
    // DQT: table 0, 8-bit values, all ones.
    out.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    out.extend_from_slice(&[1; 64]);
    // SOF0: 8 bits, 8x8, one component (id 1, 1x1 sampling, table 0).
    out.extend_from_slice(&[
        0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00,
    ]);
    // DHT: DC table 0 (0x00) and AC table 0 (0x10), each one code of
    // length 1, for category 0 and for end-of-block.
    for class in [0x00, 0x10] {
        out.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 1]);
        out.extend_from_slice(&[0; 15]);
        out.push(0x00);
    }
    // SOS: component 1 with tables 0/0, spectral 0..63.
    out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    // Scan: DC difference 0, end of block, padded with ones; then EOI.
    out.extend_from_slice(&[0x3F, 0xFF, 0xD9]);
    out
}

/// A complete JPEG: start marker, the given segments (marker, payload),
/// then an 8x8 grey image.
pub fn jpeg(segments: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    for (marker, payload) in segments {
        out.extend_from_slice(&[0xFF, *marker]);
        let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&image());
    out
}

/// A phone's JPEG: Exif with orientation, capture time and a location.
pub fn jpeg_with_location(order: Order) -> Vec<u8> {
    jpeg(&[(APP1, &phone_exif(order, true))])
}

/// A complete 1x1 grey PNG with `chunks` (type, data) before its image
/// data.
pub fn png(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    // 1x1, 8-bit greyscale.
    push_chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    for (kind, data) in chunks {
        push_chunk(&mut out, kind, data);
    }
    // zlib, one stored block holding the row: filter 0, pixel 0x80.
    let row = [0u8, 0x80];
    let mut idat = vec![0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF];
    idat.extend_from_slice(&row);
    idat.extend_from_slice(&adler32(&row).to_be_bytes());
    push_chunk(&mut out, b"IDAT", &idat);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (the reflected 0xEDB88320 polynomial PNG uses), bit by bit: the
/// photos are tiny.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for x in bytes {
        a = (a + u32::from(*x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}
