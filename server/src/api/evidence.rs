//! `GET /v1/cases/{id}/evidence/{hash}`: one piece of a case's evidence,
//! as its bytes, for head office and the dashboard.
//!
//! Access is the case's: whoever may read the case may read the evidence
//! its log names, and a hash alone grants nothing. Unlike the rest of the
//! read API, a case the caller may not read is answered 403, not 404 (an
//! evidence link is shared by people, and "forbidden" tells the clerk who
//! clicked another store's link what happened). A case that does not
//! exist gets the same 403 for anyone but head office, so the answer still
//! does not reveal which case ids exist.
//!
//! The bytes are served from the relay's blob files by `actix-files`:
//! streamed, with single and multiple ranges, `If-Range`, and an `ETag`
//! that is the content hash itself (the bytes under one hash never
//! change).

use super::cases::{blocking, not_found, principal, resolve_case};
use crate::error::{clip, ApiError, ErrorBody};
use crate::state::AppState;
use actix_files::NamedFile;
use actix_web::http::header::{
    self, ContentDisposition, DispositionParam, DispositionType, EntityTag, HeaderValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::Role;
use aftercase_sync::blobs::{BlobHash, BlobStore, Held};
use aftercase_sync::case::blob;
use aftercase_sync::relay::blobs::{Access, BlobCode};
use aftercase_sync::CaseId;

/// The file name a download is offered under: the hash and the extension
/// of its media type, so a saved photo opens as one.
fn file_name(hex: &str, media_type: &str) -> String {
    format!("{hex}.{}", blob::extension(media_type))
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(req: &HttpRequest, etag: &EntityTag) -> bool {
    let Some(v) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    v.split(',').any(|t| {
        let t = t.trim();
        t == "*"
            || t.parse::<EntityTag>()
                .is_ok_and(|candidate| candidate.weak_eq(etag))
    })
}

/// What the relay's records allow for this request: the media type the
/// case's evidence record declares.
fn decide(
    state: &AppState,
    p: &aftercase_sync::access::Principal,
    id: CaseId,
    hash: BlobHash,
    hex: &str,
) -> Result<String, ApiError> {
    let mut relay = state.relay();
    let exists = relay.meta(id)?.is_some();
    let grant = relay.blob_grant(p, id, &hash, Access::Read)?;
    drop(relay);
    match grant {
        Ok(g) => Ok(g.media_type),
        Err(r) if !exists => {
            if p.role == Role::HeadOffice {
                Err(not_found(id))
            } else {
                // The same words as for a case of another store: which
                // case ids exist is not the caller's to learn.
                let _ = r;
                Err(forbidden(id))
            }
        }
        Err(r) if r.code == BlobCode::Forbidden => Err(forbidden(id)),
        Err(r) if r.code == BlobCode::NotReferenced => Err(ApiError::NotFound(format!(
            "case {id} has no evidence {hex}"
        ))),
        Err(r) => Err(ApiError::NotFound(format!(
            "evidence {hex} of case {id}: {}",
            r.reason
        ))),
    }
}

fn forbidden(id: CaseId) -> ApiError {
    ApiError::Forbidden(format!(
        "forbidden: case {id} is not one your token may read, so neither is its evidence"
    ))
}

/// One piece of a case's evidence.
///
/// `GET /v1/cases/{id}/evidence/{hash}`: the bytes, with the media type
/// the evidence record declares (sniffed from the bytes when it was
/// attached and again when it was uploaded). Supports `Range` (206, 416)
/// and `If-None-Match` against the `ETag`, which is the hash.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}/evidence/{hash}",
    tag = "cases",
    params(
        ("id" = String, Path, format = "uuid", description = "The case id."),
        ("hash" = String, Path, description = "The evidence's SHA-256, 64 lowercase hex digits."),
    ),
    responses(
        (status = 200, description = "The evidence's bytes.", content(
            ("image/jpeg"), ("image/png"), ("image/webp"), ("image/gif"), ("image/heif"),
            ("video/mp4"), ("video/quicktime"), ("application/pdf"),
        )),
        (status = 206, description = "The requested range of the bytes."),
        (status = 304, description = "Not modified: the `If-None-Match` names this hash."),
        (status = 400, description = "Not a case id, or not a SHA-256 hash.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "The case is not one the caller may read (or, for a store's token, does not exist).", body = ErrorBody),
        (status = 404, description = "The case names no such evidence, or its device has not uploaded it yet.", body = ErrorBody),
        (status = 416, description = "A range outside the bytes."),
    )
)]
pub async fn get_evidence(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    let (raw_id, raw_hash) = path.into_inner();
    let id = resolve_case(&state, &p, &raw_id).await?;
    let hash: BlobHash = blob::parse_hash(&raw_hash).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "\"{}\" is not an evidence hash (64 lowercase hex digits of SHA-256)",
            clip(&raw_hash)
        ))
    })?;
    let hex = raw_hash;
    let (media_type, file) = blocking(&state, move |s| {
        let media_type = decide(s, &p, id, hash, &hex)?;
        match s.blobs.held(&hash) {
            Ok(Held::Complete(_)) => {}
            Ok(_) => {
                return Err(ApiError::NotFound(format!(
                    "evidence {hex} of case {id} is not at the relay yet: \
                     the device that recorded it has not uploaded it"
                )))
            }
            Err(e) => return Err(ApiError::Internal(e.to_string())),
        }
        let file = NamedFile::open(s.blobs.complete_path(&hash))
            .map_err(|e| ApiError::Internal(format!("open evidence {hex}: {e}")))?;
        Ok((media_type, file))
    })
    .await?;
    let hex = blob_hex(&hash);
    let etag = EntityTag::new_strong(hex.clone());
    if not_modified(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(header::ETag(etag))
            .finish());
    }
    let mime: actix_web::mime::Mime = media_type
        .parse()
        .map_err(|_| ApiError::Internal(format!("stored media type {media_type}")))?;
    let mut res = file
        .set_content_type(mime)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Inline,
            parameters: vec![DispositionParam::Filename(file_name(&hex, &media_type))],
        })
        .use_etag(false)
        .use_last_modified(false)
        .prefer_utf8(false)
        .into_response(&req);
    let h = res.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag.to_string()).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    // Private: the answer depends on the token. Immutable: the bytes
    // under one hash never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

fn blob_hex(hash: &BlobHash) -> String {
    aftercase_sync::blobs::hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn downloads_are_named_by_hash_and_type() {
        assert_eq!(file_name("ab", "image/jpeg"), "ab.jpg");
        assert_eq!(file_name("ab", "application/pdf"), "ab.pdf");
        assert_eq!(file_name("ab", "video/quicktime"), "ab.mov");
    }

    #[test]
    fn if_none_match_compares_tags_in_a_list() {
        let tag = EntityTag::new_strong("abc".into());
        let with = |v: &str| {
            TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, v))
                .to_http_request()
        };
        assert!(not_modified(&with("\"abc\""), &tag));
        assert!(not_modified(&with("\"x\", W/\"abc\""), &tag));
        assert!(not_modified(&with("*"), &tag));
        assert!(!not_modified(&with("\"abd\""), &tag));
        assert!(!not_modified(
            &TestRequest::default().to_http_request(),
            &tag
        ));
    }
}
