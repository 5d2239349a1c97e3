//! Evidence bytes travel: a photo attached offline reaches the relay's
//! blob store whole when the tablet syncs, and another tablet of the store
//! fetches it by hash; a tablet of another store cannot.

mod support;

use support::{Cli, Relay};

/// A JPEG-looking file of `len` bytes (the type is read from the first
/// bytes), distinct per `seed`.
pub fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.push((x >> 8) as u8);
    }
    b
}

#[test]
fn a_photo_reaches_the_relay_and_another_tablet_fetches_it_by_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let clerk = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("lin", "staff", "S1", "tab-a"),
    );
    let id = clerk.new_case("damage_claim");
    let bytes = photo(900_000, 1);
    let file = tmp.path().join("door.jpg");
    std::fs::write(&file, &bytes).unwrap();
    let out = clerk.ok(&[
        "case",
        "attach",
        &id,
        file.to_str().unwrap(),
        "--type",
        "photo",
    ]);
    let hash = out.lines().last().unwrap().trim().to_string();
    let status = clerk.ok(&["status"]);
    assert!(status.contains("1 waiting to upload"), "{status}");
    let out = clerk.ok(&["sync"]);
    assert!(out.contains("evidence: 1 of 1 sent"), "{out}");
    let status = clerk.ok(&["status"]);
    assert!(status.contains("0 waiting to upload"), "{status}");
    let stored = relay_dir
        .join("blobs/complete")
        .join(&hash[..2])
        .join(&hash);
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);

    let sup = Cli::init(
        &tmp.path().join("b"),
        &relay.url,
        &relay.token("sam", "supervisor", "S1", "tab-b"),
    );
    sup.ok(&["sync"]);
    let got = tmp.path().join("got.jpg");
    sup.ok(&["evidence", "get", &hash, "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), bytes);

    // Another store's tablet never sees the case, so it has nothing to ask
    // for; the relay's own check is tested with a hand-made client.
    let other = Cli::init(
        &tmp.path().join("c"),
        &relay.url,
        &relay.token("olga", "staff", "S2", "tab-c"),
    );
    other.ok(&["sync"]);
    let e = other.fails(&["evidence", "get", &hash, "-o", got.to_str().unwrap()]);
    assert!(e.contains("no case on this device"), "{e}");
}
