//! A photo attached on a device is stored, hashed and recorded without its
//! location: the GPS position never reaches storage, the relay or head
//! office, while orientation stays.

use aftercase_sync::access::Role;
use aftercase_sync::case::blob::sha256;
use aftercase_sync::case::edit::Customer;
use aftercase_sync::case::CaseKind;
use aftercase_sync::fuzzing::photos::{jpeg_with_location, Order};
use aftercase_sync::replica::{DeviceIdentity, Entropy, Replica};
use aftercase_sync::storage::MemoryStorage;
use aftercase_sync::{CaseId, DeviceId, Millis, StoreId, UserId};
use exif::{Context, In, Reader, Tag};

/// (GPS fields, orientation) as an independent Exif reader sees them.
fn read_exif(bytes: &[u8]) -> (usize, Option<u32>) {
    let exif = Reader::new()
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .unwrap();
    let gps = exif
        .fields()
        .filter(|f| f.tag.context() == Context::Gps)
        .count();
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0));
    (gps, orientation)
}

fn entropy(n: u8) -> Entropy {
    Entropy {
        now: Millis(1_790_000_000_000 + i64::from(n)),
        nonce: [n; 16],
        key: [0x5c; 32],
    }
}

#[test]
fn an_attached_photo_is_stored_and_hashed_without_its_location() {
    let replica = Replica::open(
        MemoryStorage::new(),
        DeviceIdentity {
            user: UserId::new("alice").unwrap(),
            role: Role::Staff,
            store: StoreId::new("S1").unwrap(),
            device: DeviceId::new("tab1").unwrap(),
        },
        [3; 16],
    );
    let case = CaseId::from_bytes([5; 16]);
    replica
        .create_case(
            case,
            entropy(1),
            CaseKind::Repair,
            Customer {
                name: "Wang Fang".into(),
                phone: "13800138000".into(),
            },
            None,
            None,
        )
        .unwrap();
    for (n, order) in Order::BOTH.into_iter().enumerate() {
        let photo = jpeg_with_location(order);
        assert_eq!(
            read_exif(&photo).0,
            5,
            "the photo as taken holds a position"
        );

        let hash = replica
            .attach_evidence(case, entropy(2 + n as u8), "photo", &photo, None)
            .unwrap();
        let stored = replica.blob(&hash).unwrap().expect("the bytes are kept");
        assert_eq!(read_exif(&stored), (0, Some(6)), "{order:?}");
        assert_eq!(hash, sha256(&stored).1, "the hash names the stored bytes");
        assert_ne!(hash, sha256(&photo).1);
        assert_eq!(
            replica.blob(&sha256(&photo).1).unwrap(),
            None,
            "nothing is kept under the original's hash"
        );
        let view = replica.case(case).unwrap().unwrap();
        let recorded = view.evidence.iter().find(|e| e.hash == hash).unwrap();
        assert_eq!(recorded.size, stored.len() as i64);
        assert_eq!(recorded.media_type, "image/jpeg");
    }
}

#[test]
fn a_photo_cut_short_in_its_metadata_is_kept_without_it() {
    let replica = Replica::open(
        MemoryStorage::new(),
        DeviceIdentity {
            user: UserId::new("alice").unwrap(),
            role: Role::Staff,
            store: StoreId::new("S1").unwrap(),
            device: DeviceId::new("tab1").unwrap(),
        },
        [3; 16],
    );
    let case = CaseId::from_bytes([6; 16]);
    replica
        .create_case(
            case,
            entropy(1),
            CaseKind::Repair,
            Customer {
                name: "Wang Fang".into(),
                phone: "13800138000".into(),
            },
            None,
            None,
        )
        .unwrap();
    let photo = jpeg_with_location(Order::Little);
    let cut = &photo[..180];
    let hash = replica
        .attach_evidence(case, entropy(2), "photo", cut, None)
        .unwrap();
    let stored = replica.blob(&hash).unwrap().unwrap();
    assert_eq!(stored.len(), cut.len());
    assert!(
        !stored.windows(4).any(|w| w == b"Exif"),
        "the cut Exif is blanked"
    );
    // The bytes the GPS latitude had (31/1 as little-endian rationals).
    assert!(cut.windows(8).any(|w| w == [31, 0, 0, 0, 1, 0, 0, 0]));
    assert!(!stored.windows(8).any(|w| w == [31, 0, 0, 0, 1, 0, 0, 0]));
}
