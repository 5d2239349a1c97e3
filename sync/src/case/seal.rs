//! Customer personal data sealed with a key of its case, so that erasing a
//! customer is destroying one key (crypto-shredding).
//!
//! Why: an Automerge document keeps every value ever written, on every
//! device that synced it, so overwriting a customer's phone leaves the old
//! one in the history that `/doc` serves and every copy stores. The
//! personal fields of a case ([`crate::case::CaseField::is_personal`]:
//! name, phone, address, member number) are therefore written sealed
//! (XChaCha20-Poly1305) under a 32-byte key that belongs to that case and
//! never enters the document. The device that opens the case draws the
//! key, keeps it beside the case and hands it to the relay; the relay gives
//! it only to devices that may read the case. Erasure destroys the key at
//! the relay and appends an [`ERASED`] entry to the timeline, which tells
//! every device holding the key to destroy its copy: the sealed bytes that
//! remain in every history are then noise, while the case's structure,
//! amounts and timeline stay.
//!
//! A sealed value is the text `sealed1:` followed by the URL-safe base64
//! (no padding) of the 24-byte nonce and the ciphertext with its tag. The
//! associated data binds it to its case and field, so a sealed value
//! copied into another field or case does not open.

use crate::ids::CaseId;
use automerge::ReadDoc;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What every sealed value starts with (the `1` is the format's version).
pub const PREFIX: &str = "sealed1:";

/// The timeline entry type the relay appends when it erases a case's
/// personal data. Devices may not write it (the write-rules table does not
/// list it), so only the relay's erasure makes a device drop its key.
pub const ERASED: &str = "personal_data_erased";

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// The key a case's personal data is sealed with. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CaseKey([u8; 32]);

impl CaseKey {
    /// A key from 32 random bytes (the caller draws them: the core draws
    /// no randomness).
    pub fn from_bytes(bytes: [u8; 32]) -> CaseKey {
        CaseKey(bytes)
    }

    /// A key read back from storage or a frame; `None` unless 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<CaseKey> {
        <[u8; 32]>::try_from(bytes).ok().map(CaseKey)
    }

    /// The key's bytes, for storage and the key frames only.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaseKey(<hidden>)")
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The value is plain text, not sealed.
    #[error("the value is not sealed")]
    NotSealed,
    /// The value starts like a sealed one but is not.
    #[error("a sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// The key, case or field does not match what it was sealed with.
    #[error("a sealed value does not open with this case's key")]
    WrongKey,
}

/// Whether `value` is a sealed value (rather than plain text).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn aad(case: CaseId, field: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + 16 + field.len());
    a.extend_from_slice(b"aftercase/seal1/");
    a.extend_from_slice(case.as_bytes());
    a.extend_from_slice(field.as_bytes());
    a
}

/// The nonce of field number `field` written by an edit whose context
/// drew `edit_nonce`: the edit's 16 random bytes and the field's number,
/// so two fields of one edit never share a nonce under the case's key.
pub fn nonce_for(edit_nonce: [u8; 16], field: u8) -> [u8; NONCE_BYTES] {
    let mut n = [0u8; NONCE_BYTES];
    n[..16].copy_from_slice(&edit_nonce);
    n[16] = field;
    n[17..].copy_from_slice(b"seal-v1");
    n
}

/// Seals `plain`, the value of `field` of `case`, under `key`.
pub fn seal(
    key: &CaseKey,
    case: CaseId,
    field: &str,
    nonce: [u8; NONCE_BYTES],
    plain: &str,
) -> String {
    let cipher = XChaCha20Poly1305::new(key.0.as_slice().into());
    let aad = aad(case, field);
    // Encryption in memory with a key and nonce of the right sizes cannot
    // fail (the AEAD errors only on lengths beyond 2^38 bytes).
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut raw = Vec::with_capacity(NONCE_BYTES + ct.len());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&ct);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

fn raw_parts(sealed: &str) -> Result<Vec<u8>, SealError> {
    let body = sealed.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SealError::Malformed("not base64"))?;
    if raw.len() < NONCE_BYTES + TAG_BYTES {
        return Err(SealError::Malformed("too short"));
    }
    Ok(raw)
}

/// How many bytes of plain text a sealed value holds, checked without the
/// key: the relay bounds sealed fields by it.
pub fn plain_len(sealed: &str) -> Result<usize, SealError> {
    Ok(raw_parts(sealed)?.len() - NONCE_BYTES - TAG_BYTES)
}

/// Opens a sealed value of `field` of `case`.
pub fn open(key: &CaseKey, case: CaseId, field: &str, sealed: &str) -> Result<String, SealError> {
    let raw = raw_parts(sealed)?;
    let (nonce, ct) = raw.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce
        .try_into()
        .map_err(|_| SealError::Malformed("too short"))?;
    let cipher = XChaCha20Poly1305::new(key.0.as_slice().into());
    let aad = aad(case, field);
    let plain = cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| SealError::WrongKey)?;
    String::from_utf8(plain).map_err(|_| SealError::Malformed("not UTF-8"))
}

/// A value as a reader sees it: plain text as it is, a sealed value opened
/// with `key`, and `None` for a sealed value without its key (erased, or
/// not handed to this reader).
pub fn reveal(key: Option<&CaseKey>, case: CaseId, field: &str, value: String) -> Option<String> {
    if !is_sealed(&value) {
        return Some(value);
    }
    open(key?, case, field, &value).ok()
}

/// Opens the sealed customer fields of a view in place (see [`reveal`]).
pub fn reveal_customer(
    c: &mut crate::case::view::CustomerView,
    key: Option<&CaseKey>,
    case: CaseId,
) {
    use crate::case::CaseField as F;
    for (slot, field) in [
        (&mut c.name, F::CustomerName),
        (&mut c.phone, F::CustomerPhone),
        (&mut c.address, F::CustomerAddress),
        (&mut c.member_id, F::CustomerMemberId),
    ] {
        *slot = slot
            .take()
            .and_then(|v| reveal(key, case, field.as_str(), v));
    }
}

/// The key of the customer map the relay's erasure sets (to its time);
/// not a settable field, so no device can write it.
pub const ERASED_AT: &str = "erased_at";

/// Whether the case's personal data was erased: the relay's erasure set
/// the customer's [`ERASED_AT`] (one lookup, so devices check it on every
/// change they take in).
pub fn is_erased(doc: &automerge::Automerge) -> bool {
    use crate::case::read;
    use crate::case::schema::root;
    read::map(doc, &automerge::ROOT, root::CUSTOMER)
        .is_some_and(|c| matches!(doc.get(&c, ERASED_AT), Ok(Some(_))))
}

/// The relay's erasure of a case's personal data, as one transaction of
/// `doc`: the personal fields removed from the current state (their sealed
/// bytes stay in the history, unreadable once the key is destroyed), the
/// customer's [`ERASED_AT`] set and an [`ERASED`] timeline entry written
/// by `ctx` (head office). Only the relay writes it, in a trusted commit.
pub fn mark_erased(
    doc: &mut automerge::Automerge,
    ctx: &crate::case::EditContext,
) -> Result<(), automerge::AutomergeError> {
    use crate::case::read;
    use crate::case::schema::{entry, root};
    use automerge::transaction::Transactable;
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let c = match read::map(tx, &automerge::ROOT, root::CUSTOMER) {
            Some(c) => c,
            None => tx.put_object(automerge::ROOT, root::CUSTOMER, automerge::ObjType::Map)?,
        };
        for f in crate::case::CaseField::ALL
            .iter()
            .filter(|f| f.is_personal())
        {
            let (_, key) = f.place();
            if matches!(tx.get(&c, key), Ok(Some(_))) {
                tx.delete(&c, key)?;
            }
        }
        tx.put(&c, ERASED_AT, automerge::ScalarValue::Timestamp(ctx.now.0))?;
        let e = crate::case::edit::put_entry(tx, root::TIMELINE, ctx, ERASED)?;
        tx.put(&e, entry::TEXT, "customer personal data erased")?;
        Ok(())
    })
    .map(|_| ())
    .map_err(|f| f.error)
}

/// Whether any personal field of the case holds a sealed value.
pub fn has_sealed(doc: &automerge::Automerge) -> bool {
    use crate::case::read;
    use crate::case::schema::root;
    let Some(c) = read::map(doc, &automerge::ROOT, root::CUSTOMER) else {
        return false;
    };
    doc.keys(&c)
        .any(|k| read::string(doc, &c, &k).is_some_and(|v| is_sealed(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> CaseId {
        "6f1c2b1e-8d0a-4f5e-9b7a-2c3d4e5f6a7b".parse().unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_case_and_field() {
        let k = CaseKey::from_bytes([7; 32]);
        let s = seal(&k, case(), "phone", nonce_for([1; 16], 0), "13800000000");
        assert!(is_sealed(&s));
        assert!(!s.contains("13800000000"));
        assert_eq!(open(&k, case(), "phone", &s).unwrap(), "13800000000");
        assert_eq!(plain_len(&s).unwrap(), 11);
        let other = CaseKey::from_bytes([8; 32]);
        assert_eq!(open(&other, case(), "phone", &s), Err(SealError::WrongKey));
        assert_eq!(open(&k, case(), "name", &s), Err(SealError::WrongKey));
        let other_case: CaseId = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        assert_eq!(open(&k, other_case, "phone", &s), Err(SealError::WrongKey));
        assert_eq!(reveal(None, case(), "phone", s.clone()), None);
        assert_eq!(
            reveal(None, case(), "phone", "plain".into()).as_deref(),
            Some("plain")
        );
    }

    #[test]
    fn broken_sealed_values_are_refused_not_panicked_on() {
        let k = CaseKey::from_bytes([7; 32]);
        for bad in ["sealed1:", "sealed1:!!!", "sealed1:AAAA", "plain"] {
            assert!(open(&k, case(), "phone", bad).is_err(), "{bad}");
        }
        let mut s = seal(&k, case(), "phone", nonce_for([1; 16], 0), "x");
        s.pop();
        s.push('A');
        assert!(open(&k, case(), "phone", &s).is_err());
    }

    #[test]
    fn the_key_never_prints() {
        let k = CaseKey::from_bytes([0xab; 32]);
        assert!(!format!("{k:?}").contains("ab"));
    }
}
