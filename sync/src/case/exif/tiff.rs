//! The GPS IFD removed from an Exif TIFF structure, in place.
//!
//! The structure is read completely before a byte is written: every IFD a
//! reader follows (the IFD0 chain and the Exif and Interoperability IFDs
//! hanging from it) is located and bounds-checked, and so is every value of
//! the GPS IFD. Only then are the GPS IFD's table and out-of-line values
//! zeroed and the pointers to it taken out of their IFDs. A structure that
//! does not read cleanly is reported as [`Malformed`], and the caller drops
//! the whole Exif block: a partly understood structure could still lead
//! some reader to a position.

use std::collections::BTreeSet;
use std::ops::Range;

/// The tag of the pointer to the GPS IFD.
const GPS_POINTER: u16 = 0x8825;
/// The tag of the pointer to the Exif IFD.
const EXIF_POINTER: u16 = 0x8769;
/// The tag of the pointer to the Interoperability IFD.
const INTEROP_POINTER: u16 = 0xA005;
/// More IFDs than this is not a photo's Exif (cameras write four or five);
/// the bound also keeps hostile input from costing much.
const MAX_IFDS: usize = 32;
/// Bytes of one IFD entry: tag, type, count, value or offset.
const ENTRY: usize = 12;

/// Why a TIFF structure could not be cleaned precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed(pub &'static str);

/// Removes the GPS IFD from `tiff` (the bytes after `Exif\0\0`, starting
/// with the TIFF header). Returns whether there was one; on `Malformed`
/// nothing was written.
pub(super) fn strip_gps(tiff: &mut [u8]) -> Result<bool, Malformed> {
    let plan = Plan::read(tiff)?;
    if plan.pointers.is_empty() {
        return Ok(false);
    }
    plan.apply(tiff);
    Ok(true)
}

/// Byte-order aware reads and writes at bounds-checked positions.
#[derive(Clone, Copy)]
struct Order {
    big_endian: bool,
}

impl Order {
    fn u16_at(self, b: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32_at(self, b: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    fn put_u16(self, b: &mut [u8], at: usize, v: u16) {
        let raw = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        if let Some(dst) = b.get_mut(at..at + 2) {
            dst.copy_from_slice(&raw);
        }
    }
}

/// One IFD a reader follows and that is kept.
struct Ifd {
    /// Position of its entry count.
    at: usize,
    count: usize,
    /// Whether the four bytes of the next-IFD offset follow the entries
    /// inside the buffer (a last IFD sometimes ends without them).
    has_next: bool,
}

impl Ifd {
    fn entry(&self, i: usize) -> usize {
        self.at + 2 + i * ENTRY
    }

    /// The bytes of its count, entries and next-IFD offset.
    fn span(&self) -> Range<usize> {
        let end = self.entry(self.count) + if self.has_next { 4 } else { 0 };
        self.at..end
    }
}

/// What [`strip_gps`] will do, found before anything is written.
struct Plan {
    order: Order,
    ifds: Vec<Ifd>,
    /// (index into `ifds`, entry index) of every GPS pointer.
    pointers: Vec<(usize, usize)>,
    /// Byte ranges to zero: each GPS IFD's table and out-of-line values.
    zero: Vec<Range<usize>>,
}

impl Plan {
    fn read(b: &[u8]) -> Result<Plan, Malformed> {
        let order = match b.get(..4) {
            Some(b"II\x2A\x00") => Order { big_endian: false },
            Some(b"MM\x00\x2A") => Order { big_endian: true },
            _ => return Err(Malformed("no TIFF header")),
        };
        let first = order.u32_at(b, 4).ok_or(Malformed("no TIFF header"))?;
        let mut plan = Plan {
            order,
            ifds: Vec::new(),
            pointers: Vec::new(),
            zero: Vec::new(),
        };
        let mut gps_ifds = Vec::new();
        let mut seen = BTreeSet::new();
        // (offset, whether its next-IFD offset continues the main chain).
        // Sub-IFDs' next offsets are not followed: cameras leave garbage
        // there and readers ignore it.
        let mut queue = vec![(first, true)];
        while let Some((offset, chain)) = queue.pop() {
            if offset == 0 {
                continue;
            }
            let at = offset as usize;
            if !seen.insert(at) {
                return Err(Malformed("IFDs form a loop or share a table"));
            }
            if seen.len() > MAX_IFDS {
                return Err(Malformed("too many IFDs"));
            }
            let ifd = read_ifd(order, b, at)?;
            for i in 0..ifd.count {
                let e = ifd.entry(i);
                match order.u16_at(b, e) {
                    Some(GPS_POINTER) => {
                        plan.pointers.push((plan.ifds.len(), i));
                        // Offset 0 is the TIFF header: there is no GPS IFD
                        // to clear, and the pointer goes all the same.
                        if let Some(gps) = pointer(order, b, e)?.filter(|g| *g != 0) {
                            gps_ifds.push(gps);
                        }
                    }
                    Some(EXIF_POINTER | INTEROP_POINTER) => {
                        if let Some(child) = pointer(order, b, e)? {
                            queue.push((child, false));
                        }
                    }
                    _ => {}
                }
            }
            if chain && ifd.has_next {
                let next = order.u32_at(b, ifd.entry(ifd.count));
                queue.push((next.unwrap_or(0), true));
            }
            plan.ifds.push(ifd);
        }
        for gps in gps_ifds {
            plan.plan_gps_ifd(b, gps as usize)?;
        }
        // Zeroing the header or a table that is kept would change what a
        // reader (and a second stripping) finds; such overlap is not a
        // camera's layout.
        let kept: Vec<Range<usize>> = std::iter::once(0..8)
            .chain(plan.ifds.iter().map(Ifd::span))
            .collect();
        let overlaps = plan
            .zero
            .iter()
            .any(|z| kept.iter().any(|k| z.start < k.end && k.start < z.end));
        if overlaps {
            return Err(Malformed("the GPS IFD overlaps another IFD"));
        }
        Ok(plan)
    }

    /// Adds the GPS IFD at `at` (its table and its values) to the bytes
    /// to zero.
    fn plan_gps_ifd(&mut self, b: &[u8], at: usize) -> Result<(), Malformed> {
        let ifd = read_ifd(self.order, b, at)?;
        for i in 0..ifd.count {
            if let Some(r) = out_of_line(self.order, b, ifd.entry(i))? {
                self.zero.push(r);
            }
        }
        self.zero.push(ifd.span());
        Ok(())
    }

    fn apply(&self, b: &mut [u8]) {
        for r in &self.zero {
            if let Some(bytes) = b.get_mut(r.clone()) {
                bytes.fill(0);
            }
        }
        for (n, ifd) in self.ifds.iter().enumerate() {
            let gone: BTreeSet<usize> = self
                .pointers
                .iter()
                .filter(|(k, _)| *k == n)
                .map(|(_, i)| *i)
                .collect();
            if !gone.is_empty() {
                self.remove_entries(b, ifd, &gone);
            }
        }
    }

    /// Takes entries out of an IFD: the kept ones move up in order, the
    /// next-IFD offset follows them, the freed bytes become zeros.
    fn remove_entries(&self, b: &mut [u8], ifd: &Ifd, gone: &BTreeSet<usize>) {
        let span = ifd.span();
        let Some(old) = b.get(span.clone()).map(<[u8]>::to_vec) else {
            return;
        };
        let mut table = Vec::with_capacity(old.len());
        let kept = ifd.count - gone.len();
        // The count is rewritten below; two placeholder bytes keep the layout.
        table.extend_from_slice(&[0, 0]);
        for i in (0..ifd.count).filter(|i| !gone.contains(i)) {
            let e = 2 + i * ENTRY;
            table.extend_from_slice(&old[e..e + ENTRY]);
        }
        if ifd.has_next {
            let n = 2 + ifd.count * ENTRY;
            table.extend_from_slice(&old[n..n + 4]);
        }
        table.resize(old.len(), 0);
        b[span].copy_from_slice(&table);
        // `kept` is below the old count, which came from a u16.
        self.order
            .put_u16(b, ifd.at, u16::try_from(kept).unwrap_or(0));
    }
}

/// Locates and bounds-checks the IFD at `at`.
fn read_ifd(order: Order, b: &[u8], at: usize) -> Result<Ifd, Malformed> {
    let count = order
        .u16_at(b, at)
        .ok_or(Malformed("an IFD starts past the end"))? as usize;
    let end = at
        .checked_add(2 + count * ENTRY)
        .filter(|end| *end <= b.len())
        .ok_or(Malformed("an IFD runs past the end"))?;
    Ok(Ifd {
        at,
        count,
        has_next: end + 4 <= b.len(),
    })
}

/// The size of one value of a TIFF type, or `None` for a type readers
/// skip (they cannot know its size either).
fn unit(typ: u16) -> Option<usize> {
    match typ {
        1 | 2 | 6 | 7 => Some(1),
        3 | 8 => Some(2),
        4 | 9 | 11 | 13 => Some(4),
        5 | 10 | 12 => Some(8),
        _ => None,
    }
}

/// Where the value of the entry at `e` lives: inline in the entry's last
/// four bytes or, when larger, at the offset those bytes hold.
fn value_range(order: Order, b: &[u8], e: usize) -> Result<Option<Range<usize>>, Malformed> {
    let typ = order.u16_at(b, e + 2).unwrap_or(0);
    let Some(unit) = unit(typ) else {
        return Ok(None);
    };
    let count = order.u32_at(b, e + 4).unwrap_or(0) as usize;
    let len = unit
        .checked_mul(count)
        .ok_or(Malformed("a value's size overflows"))?;
    if len <= 4 {
        return Ok(Some(e + 8..e + 8 + len));
    }
    let at = order.u32_at(b, e + 8).unwrap_or(0) as usize;
    match at.checked_add(len) {
        Some(end) if end <= b.len() => Ok(Some(at..end)),
        _ => Err(Malformed("a value runs past the end")),
    }
}

/// The out-of-line value of the entry at `e`, if it has one.
fn out_of_line(order: Order, b: &[u8], e: usize) -> Result<Option<Range<usize>>, Malformed> {
    Ok(value_range(order, b, e)?.filter(|r| r.start != e + 8))
}

/// The IFD offset a pointer entry holds: its first value read as an
/// unsigned integer, as readers do whatever the declared type.
fn pointer(order: Order, b: &[u8], e: usize) -> Result<Option<u32>, Malformed> {
    let typ = order.u16_at(b, e + 2).unwrap_or(0);
    let Some(r) = value_range(order, b, e)? else {
        return Ok(None);
    };
    if r.is_empty() {
        return Ok(None);
    }
    Ok(match typ {
        1 => b.get(r.start).map(|v| u32::from(*v)),
        3 => order.u16_at(b, r.start).map(u32::from),
        4 | 13 => order.u32_at(b, r.start),
        _ => None,
    })
}
