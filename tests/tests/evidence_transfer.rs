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
        // No 0xFF after the header: nothing reads as a JPEG marker.
        b.push(((x >> 8) as u8).min(0xFE));
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

/// Runs `aftercase sync` (with `args`) until it succeeds; returns the
/// number of attempts (each failed one is a cut connection).
fn sync_until_done(cli: &Cli, args: &[&str]) -> usize {
    for attempt in 1..=80 {
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        if cli.run(&all).status.success() {
            return attempt;
        }
    }
    panic!("sync never completed");
}

/// A running `aftercase sync` that printed `needle`; a sync that ended
/// first (its link was cut) is started again.
fn syncing_until(cli: &Cli, needle: &str) -> support::Watched {
    for _ in 0..40 {
        let mut w = support::Watched::spawn(cli, &["sync"]);
        if w.try_wait_for(needle).is_some() {
            return w;
        }
    }
    panic!("no sync got as far as {needle:?}");
}

/// Every complete blob at the relay is whole: its bytes hash to its name.
fn complete_blobs(relay_dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let root = relay_dir.join("blobs/complete");
    for sub in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(f.path()).unwrap();
            let (_, hex) = aftercase_sync::case::blob::sha256(&bytes);
            assert_eq!(hex, name, "a complete blob must be whole");
            out.push(name);
        }
    }
    out
}

#[test]
fn photos_arrive_whole_through_cut_links_and_kill_9_of_relay_and_device() {
    use aftercase_tests::cutproxy::{CutPlan, CutProxy};
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let addr = format!("127.0.0.1:{}", support::free_port());
    let mut relay = Relay::start_on(&relay_dir, &addr);
    let total_photos = 10;
    let size = 1_200_000;
    // Ten cuts at random bytes of the photos' way, then a clean link.
    let proxy = CutProxy::start(
        addr.parse().unwrap(),
        CutPlan::random(7, 10, (total_photos * size / 14) as u64),
    )
    .unwrap();
    let via = format!("http://{}", proxy.addr());
    let clerk = Cli::init(
        &tmp.path().join("a"),
        &via,
        &relay.token("lin", "staff", "S1", "tab-a"),
    );
    let id = clerk.new_case("damage_claim");
    let mut photos = Vec::new();
    for i in 0..total_photos {
        let bytes = photo(size + i, 10 + i as u8);
        let file = tmp.path().join(format!("p{i}.jpg"));
        std::fs::write(&file, &bytes).unwrap();
        let out = clerk.ok(&[
            "case",
            "attach",
            &id,
            file.to_str().unwrap(),
            "--type",
            "photo",
        ]);
        photos.push((out.lines().last().unwrap().trim().to_string(), bytes));
    }

    // The relay is killed while photos are on their way.
    let sync = syncing_until(&clerk, "sending evidence: 2/");
    relay.kill9();
    drop(sync);
    relay = Relay::start_on(&relay_dir, &addr);
    // Then the tablet is killed while photos are on their way.
    let sync = syncing_until(&clerk, "sending evidence: 1/");
    sync.kill9();
    // Nothing half is complete, whatever was cut or killed when.
    complete_blobs(&relay_dir);

    let attempts = sync_until_done(&clerk, &[]);
    let status = clerk.ok(&["status"]);
    assert!(status.contains("0 waiting to upload"), "{status}");
    let complete = complete_blobs(&relay_dir);
    for (hash, bytes) in &photos {
        assert!(complete.contains(hash), "photo {hash} missing at the relay");
        let stored = relay_dir.join("blobs/complete").join(&hash[..2]).join(hash);
        assert_eq!(&std::fs::read(stored).unwrap(), bytes);
    }
    let data: u64 = photos.iter().map(|(_, b)| b.len() as u64).sum();
    let stats = proxy.stats();
    // Each cut or kill costs at most the chunk in flight, plus what the
    // killed relay had not written; cases and frames cost little.
    assert!(
        stats.up_bytes < data + (stats.cuts as u64 + 4) * 512 * 1024 + 1_000_000,
        "sent {} for {data} bytes of photos with {} cuts ({attempts} syncs)",
        stats.up_bytes,
        stats.cuts
    );

    // A second tablet fetches them all, over the same (cutting) link.
    let sup = Cli::init(
        &tmp.path().join("b"),
        &via,
        &relay.token("sam", "supervisor", "S1", "tab-b"),
    );
    sync_until_done(&sup, &["--evidence"]);
    for (hash, bytes) in &photos {
        let out = tmp.path().join(format!("{hash}.jpg"));
        sup.ok(&["evidence", "get", hash, "-o", out.to_str().unwrap()]);
        assert_eq!(&std::fs::read(&out).unwrap(), bytes);
    }
    let status = sup.ok(&["status"]);
    assert!(
        status.contains(&format!("{total_photos} kept here")),
        "{status}"
    );
    drop(relay);
}
