//! Evidence against a hostile or outdated client, over real sockets to the
//! real relay: mistyped, oversized, truncated and corrupt uploads are
//! refused with a reason and store nothing; a token of another store gets
//! 403 for a blob even knowing its hash; a tablet on the previous protocol
//! keeps syncing cases; and `GET /v1/cases/{id}/evidence/{hash}` serves
//! the bytes with their type, ranges and conditional requests.

mod support;

use aftercase_sync::blobs::BlobHash;
use aftercase_sync::case::blob::{parse_hash, sha256};
use aftercase_sync::case::evidence::{self, Evidence};
use aftercase_sync::case::EditContext;
use aftercase_sync::protocol::Frame;
use aftercase_sync::CaseId;
use automerge::sync::{State, SyncDoc};
use automerge::Automerge;
use futures_util::{SinkExt, StreamExt};
use std::path::Path;
use std::time::Duration;
use support::{runtime, try_raw_socket, Cli, RawSocket, Relay};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Protocol version this connection speaks (the relay answers in it).
struct Conn {
    ws: RawSocket,
    version: u8,
}

impl Conn {
    async fn open(url: &str, token: &str, version: u8) -> Conn {
        let ws = try_raw_socket(url, token).await.expect("connect");
        let mut c = Conn { ws, version };
        let features = if version > 3 {
            vec!["blobs".to_string()]
        } else {
            Vec::new()
        };
        c.send(&Frame::Hello {
            cursor: 0,
            policy_version: 0,
            app_version: String::new(),
            unsynced: Default::default(),
            features,
        })
        .await;
        c
    }

    async fn send(&mut self, f: &Frame) {
        self.ws
            .send(WsMessage::Binary(f.encode_for(self.version).into()))
            .await
            .expect("send frame");
    }

    /// The next frame, checked to be in this connection's version.
    async fn recv(&mut self) -> Frame {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("the relay answers")
                .expect("connection open")
                .expect("frame");
            if let WsMessage::Binary(b) = m {
                let (v, f) = Frame::decode_versioned(&b).expect("a frame");
                assert_eq!(v, self.version, "answered in another version: {f:?}");
                return f;
            }
        }
    }

    /// Frames until the hello's announcement is complete (a Welcome
    /// included, if any).
    async fn settled(&mut self) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            let f = self.recv().await;
            let done = matches!(f, Frame::Announce { complete: true, .. });
            seen.push(f);
            if done {
                return seen;
            }
        }
    }

    async fn fetch(&mut self, case: CaseId) -> Automerge {
        self.send(&Frame::Fetch { docs: vec![case] }).await;
        loop {
            if let Frame::Snapshots { docs } = self.recv().await {
                let d = docs.into_iter().find(|d| d.doc == case).expect("the case");
                return Automerge::load(&d.bytes).expect("a document");
            }
        }
    }

    /// Automerge sync of `doc`; the refusal, if any, as (code, reason).
    async fn upload(&mut self, case: CaseId, doc: &mut Automerge) -> Result<(), (String, String)> {
        let mut state = State::new();
        for _ in 0..20 {
            let Some(msg) = doc.generate_sync_message(&mut state) else {
                return Ok(());
            };
            self.send(&Frame::Sync {
                doc: case,
                message: msg.encode(),
            })
            .await;
            loop {
                match self.recv().await {
                    Frame::Sync { doc: d, message } if d == case => {
                        let m = automerge::sync::Message::decode(&message).unwrap();
                        doc.receive_sync_message(&mut state, m).unwrap();
                        break;
                    }
                    Frame::Refused {
                        doc: d,
                        code,
                        reason,
                    } if d == case => return Err((code, reason)),
                    Frame::Error { reason } => panic!("relay closed the connection: {reason}"),
                    _ => {}
                }
            }
        }
        panic!("sync did not settle");
    }

    /// Sends a blob frame and returns the relay's blob answer.
    async fn blob(&mut self, f: Frame) -> Frame {
        self.send(&f).await;
        loop {
            match self.recv().await {
                f @ (Frame::BlobAt { .. }
                | Frame::BlobStored { .. }
                | Frame::BlobRefused { .. }
                | Frame::BlobChunk { .. }) => return f,
                Frame::Error { reason } => panic!("relay closed the connection: {reason}"),
                _ => {}
            }
        }
    }
}

/// A JPEG-looking file of `len` bytes, distinct per `seed`.
fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
    ];
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.push(((x >> 8) as u8).min(0xFE));
    }
    b
}

/// An x86-64 Linux executable's first bytes, padded.
fn executable(len: usize) -> Vec<u8> {
    let mut b = vec![
        0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3E, 0, 1, 0, 0, 0,
    ];
    b.resize(len, 0x90);
    b
}

fn ctx(n: u8, device: &str) -> EditContext {
    EditContext {
        author: "lin".parse().unwrap(),
        role: aftercase_sync::access::Role::Staff,
        device: device.parse().unwrap(),
        now: aftercase_sync::Millis(chrono::Utc::now().timestamp_millis()),
        nonce: [n; 16],
    }
}

/// Records evidence of `bytes` claimed to be `media_type` and `size`
/// bytes, as a modified client would (no check of its own).
fn record(doc: &mut Automerge, case: CaseId, n: u8, hash: &str, size: u64, media_type: &str) {
    let lax = aftercase_sync::policy::Policy {
        max_blob_bytes: u64::MAX >> 1,
        ..Default::default()
    };
    evidence::attach(
        doc,
        case,
        &ctx(n, "tab-raw"),
        &lax,
        &Evidence {
            kind: "photo".into(),
            hash: hash.into(),
            size,
            media_type: media_type.into(),
            captured_at: 0,
            caption: None,
        },
    )
    .expect("recorded");
}

fn hash_of(bytes: &[u8]) -> (BlobHash, String) {
    let (_, hex) = sha256(bytes);
    (parse_hash(&hex).unwrap(), hex)
}

/// Every blob file at the relay, partial or complete, by name.
fn stored(relay_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![relay_dir.join("blobs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e.path().strip_prefix(relay_dir).unwrap().to_owned();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn has(relay_dir: &Path, hex: &str) -> Vec<String> {
    stored(relay_dir)
        .into_iter()
        .filter(|p| p.contains(hex))
        .collect()
}

fn refused(f: &Frame) -> (String, String) {
    match f {
        Frame::BlobRefused { code, reason, .. } => (code.clone(), reason.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Uploads `bytes` whole in chunks of `chunk`, after an offer.
async fn send_all(c: &mut Conn, case: CaseId, hash: BlobHash, bytes: &[u8], chunk: usize) -> Frame {
    let mut at = match c.blob(Frame::BlobOffer { doc: case, hash }).await {
        Frame::BlobAt { offset, .. } => offset,
        other => return other,
    };
    loop {
        let end = (at as usize + chunk).min(bytes.len());
        let f = c
            .blob(Frame::BlobChunk {
                hash,
                offset: at,
                bytes: bytes[at as usize..end].to_vec(),
            })
            .await;
        match f {
            Frame::BlobAt { offset, .. } => at = offset,
            other => return other,
        }
    }
}

#[test]
fn hostile_uploads_are_refused_store_nothing_and_the_connection_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let lin = relay.token("lin", "staff", "S1", "tab-raw");
    let clerk = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("lin", "staff", "S1", "tab-a"),
    );
    let id = clerk.new_case("damage_claim");
    clerk.ok(&["sync"]);
    let case: CaseId = id.parse().unwrap();
    let rt = runtime();

    rt.block_on(async {
        let mut c = Conn::open(&relay.url, &lin, 4).await;
        let hello = c.settled().await;
        assert!(
            hello
                .iter()
                .any(|f| matches!(f, Frame::Welcome { features } if features.iter().any(|x| x == "blobs"))),
            "a v4 hello asking for blobs is welcomed: {hello:?}"
        );
        let mut doc = c.fetch(case).await;

        // Records for every attack, uploaded as case data.
        let elf = executable(4096);
        let (elf_hash, elf_hex) = hash_of(&elf);
        record(&mut doc, case, 1, &elf_hex, elf.len() as u64, "image/jpeg");
        let small = photo(2000, 2);
        let (small_hash, small_hex) = hash_of(&small);
        record(&mut doc, case, 2, &small_hex, small.len() as u64, "image/jpeg");
        let cut = photo(600_000, 3);
        let (cut_hash, cut_hex) = hash_of(&cut);
        record(&mut doc, case, 3, &cut_hex, cut.len() as u64, "image/jpeg");
        c.upload(case, &mut doc).await.expect("the records are fine");

        // A record of 60 MB is over the policy's 50 MB: the case data
        // itself is refused, with the limit named.
        let mut big = doc.fork();
        record(&mut big, case, 4, &"ab".repeat(32), 60 << 20, "image/jpeg");
        let (code, reason) = c.upload(case, &mut big).await.expect_err("refused");
        assert!(reason.contains("52428800"), "{code}: {reason}");

        // An executable recorded as a JPEG: refused on its first chunk,
        // naming what the bytes are and what the record says.
        let f = send_all(&mut c, case, elf_hash, &elf, 1024).await;
        let (code, reason) = refused(&f);
        assert_eq!(code, "wrong_type", "{reason}");
        assert!(reason.contains("image/jpeg"), "{reason}");
        assert!(has(&relay_dir, &elf_hex).is_empty(), "nothing stored");

        // More bytes than the record declares: refused, the partial gone.
        let mut longer = small.clone();
        longer.extend_from_slice(&[7; 100]);
        let f = send_all(&mut c, case, small_hash, &longer, 1024).await;
        let (code, reason) = refused(&f);
        assert_eq!(code, "too_large", "{reason}");
        assert!(reason.contains("2000"), "{reason}");
        assert!(has(&relay_dir, &small_hex).is_empty(), "nothing stored");

        // A first chunk too small to tell the type: refused, not stored.
        let f = c.blob(Frame::BlobOffer { doc: case, hash: cut_hash }).await;
        assert!(matches!(f, Frame::BlobAt { offset: 0, .. }), "{f:?}");
        let f = c
            .blob(Frame::BlobChunk {
                hash: cut_hash,
                offset: 0,
                bytes: cut[..100].to_vec(),
            })
            .await;
        let (code, reason) = refused(&f);
        assert!(reason.contains("512"), "{code}: {reason}");
        assert!(has(&relay_dir, &cut_hex).is_empty(), "nothing stored");

        // Right size, wrong bytes: the hash decides; nothing kept.
        let mut corrupt = small.clone();
        corrupt[1500] ^= 1;
        let f = send_all(&mut c, case, small_hash, &corrupt, 1024).await;
        let (code, reason) = refused(&f);
        assert_eq!(code, "mismatch", "{reason}");
        assert!(has(&relay_dir, &small_hex).is_empty(), "nothing stored");

        // After all that, the same connection uploads the real photo.
        let f = send_all(&mut c, case, small_hash, &small, 1024).await;
        assert!(matches!(f, Frame::BlobStored { .. }), "{f:?}");

        // A truncated upload: the connection dies after 300 kB.
        let f = c.blob(Frame::BlobOffer { doc: case, hash: cut_hash }).await;
        assert!(matches!(f, Frame::BlobAt { offset: 0, .. }), "{f:?}");
        for (i, part) in cut[..300_000].chunks(100_000).enumerate() {
            let f = c
                .blob(Frame::BlobChunk {
                    hash: cut_hash,
                    offset: (i * 100_000) as u64,
                    bytes: part.to_vec(),
                })
                .await;
            assert!(matches!(f, Frame::BlobAt { .. }), "{f:?}");
        }
        drop(c);
    });

    // Nothing of the truncated photo is served, and the answer says why.
    let (status, body) = relay.get(
        &format!("/v1/cases/{id}/evidence/{}", hash_of(&photo(600_000, 3)).1),
        Some(&lin),
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("not uploaded"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let cut = photo(600_000, 3);
    let (cut_hash, cut_hex) = hash_of(&cut);
    assert!(
        stored(&relay_dir)
            .iter()
            .all(|p| !p.starts_with("blobs/complete") || !p.contains(&cut_hex)),
        "a truncated upload is never complete"
    );

    rt.block_on(async {
        // The next connection resumes where the bytes stopped.
        let mut c = Conn::open(&relay.url, &lin, 4).await;
        c.settled().await;
        let f = c
            .blob(Frame::BlobOffer {
                doc: case,
                hash: cut_hash,
            })
            .await;
        assert!(
            matches!(
                f,
                Frame::BlobAt {
                    offset: 300_000,
                    ..
                }
            ),
            "resume at 300000: {f:?}"
        );
        let f = send_all(&mut c, case, cut_hash, &cut, 200_000).await;
        assert!(matches!(f, Frame::BlobStored { .. }), "{f:?}");
    });
    let (status, body) = relay.get(&format!("/v1/cases/{id}/evidence/{cut_hex}"), Some(&lin));
    assert_eq!(status, 200);
    assert_eq!(body, cut);

    // Another store's staff, knowing the case and the hash: forbidden
    // over sync and over HTTP.
    let olga = relay.token("olga", "staff", "S2", "tab-o");
    rt.block_on(async {
        let mut c = Conn::open(&relay.url, &olga, 4).await;
        c.settled().await;
        let f = c
            .blob(Frame::BlobGet {
                doc: case,
                hash: cut_hash,
                offset: 0,
            })
            .await;
        assert_eq!(refused(&f).0, "forbidden");
        let f = c
            .blob(Frame::BlobOffer {
                doc: case,
                hash: cut_hash,
            })
            .await;
        assert_eq!(refused(&f).0, "forbidden");
    });
    let (status, body) = relay.get(&format!("/v1/cases/{id}/evidence/{cut_hex}"), Some(&olga));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["code"], "forbidden");

    // The clerk's own tablet still syncs as before.
    clerk.ok(&["sync"]);
    let shown = clerk.ok(&["case", "evidence", &id]);
    assert!(shown.contains(&cut_hex), "{shown}");
}

#[test]
fn a_tablet_on_the_previous_protocol_keeps_syncing_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let clerk = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("lin", "staff", "S1", "tab-a"),
    );
    let id = clerk.new_case("repair");
    clerk.ok(&["case", "note", &id, "sent from the current app"]);
    clerk.ok(&["sync"]);
    let case: CaseId = id.parse().unwrap();
    let old = relay.token("lin", "staff", "S1", "tab-old");
    let rt = runtime();
    rt.block_on(async {
        let mut c = Conn::open(&relay.url, &old, 3).await;
        let hello = c.settled().await;
        assert!(
            !hello.iter().any(|f| matches!(f, Frame::Welcome { .. })),
            "no frame version 3 does not know: {hello:?}"
        );
        assert!(
            hello.iter().any(
                |f| matches!(f, Frame::Announce { docs, .. } if docs.iter().any(|d| d.doc == case))
            ),
            "the case is announced: {hello:?}"
        );
        let mut doc = c.fetch(case).await;
        aftercase_sync::case::edit::add_note(
            &mut doc,
            case,
            &ctx(9, "tab-old"),
            "written on the old app",
        )
        .unwrap();
        c.upload(case, &mut doc).await.expect("accepted");
    });
    clerk.ok(&["sync"]);
    let shown = clerk.show(&id).to_string();
    assert!(shown.contains("written on the old app"), "{shown}");
}

#[test]
fn evidence_is_served_over_http_with_type_ranges_and_caching() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let clerk = Cli::init(
        &tmp.path().join("a"),
        &relay.url,
        &relay.token("lin", "staff", "S1", "tab-a"),
    );
    let id = clerk.new_case("damage_claim");
    let bytes = photo(300_000, 5);
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
    let hex = out.lines().last().unwrap().trim().to_string();
    clerk.ok(&["sync"]);
    let url = format!("{}/v1/cases/{id}/evidence/{hex}", relay.url);
    let sam = relay.token("sam", "supervisor", "S1", "tab-s");
    let hq = relay.token("hq", "head_office", "HQ", "hq-1");
    let http = reqwest::blocking::Client::new();
    let get = |token: &str, headers: &[(&str, &str)]| {
        let mut r = http.get(&url).bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().expect("http")
    };

    for token in [&sam, &hq] {
        let r = get(token, &[]);
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "image/jpeg");
        assert_eq!(h["etag"], format!("\"{hex}\"").as_str());
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("{hex}.jpg")));
        assert_eq!(r.bytes().unwrap().as_ref(), &bytes[..]);
    }

    let r = get(&sam, &[("Range", "bytes=1000-1999")]);
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[1000..2000]);
    let r = get(&sam, &[("Range", "bytes=-10")]);
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[300_000 - 10..]);
    let r = get(&sam, &[("Range", "bytes=299990-")]);
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[299_990..]);
    let r = get(&sam, &[("Range", "bytes=400000-")]);
    assert_eq!(r.status(), 416);
    let r = get(&sam, &[("If-None-Match", &format!("\"{hex}\""))]);
    assert_eq!(r.status(), 304);
    assert!(r.bytes().unwrap().is_empty());

    let status = |path: &str, token: Option<&str>| relay.get(path, token).0;
    let other = "0".repeat(64);
    let ghost = "7d1f8f0e-3c53-4d3b-9d43-1f5a5b5f5e5e";
    // No token, an unknown case number, a bad hash.
    assert_eq!(status(&format!("/v1/cases/{id}/evidence/{hex}"), None), 401);
    assert_eq!(
        status(&format!("/v1/cases/nope/evidence/{hex}"), Some(&sam)),
        404
    );
    assert_eq!(
        status(&format!("/v1/cases/{id}/evidence/xyz"), Some(&sam)),
        400
    );
    // A hash the case does not name: not found, to whoever reads the case.
    assert_eq!(
        status(&format!("/v1/cases/{id}/evidence/{other}"), Some(&sam)),
        404
    );
    // A case that does not exist: 404 to head office, and to a store's
    // token the same 403 as another store's case (ids are not probed).
    assert_eq!(
        status(&format!("/v1/cases/{ghost}/evidence/{hex}"), Some(&hq)),
        404
    );
    let olga = relay.token("olga", "staff", "S2", "tab-o");
    let (s1, b1) = relay.get(&format!("/v1/cases/{ghost}/evidence/{hex}"), Some(&olga));
    let (s2, b2) = relay.get(&format!("/v1/cases/{id}/evidence/{hex}"), Some(&olga));
    assert_eq!((s1, s2), (403, 403));
    let words = |b: &[u8], case: &str| String::from_utf8_lossy(b).replace(case, "ID");
    assert_eq!(words(&b1, ghost), words(&b2, &id));
    // A technician not assigned to the case.
    let tom = relay.token("tom", "technician", "S1", "tab-t");
    assert_eq!(
        status(&format!("/v1/cases/{id}/evidence/{hex}"), Some(&tom)),
        403
    );
}
