//! CSV answers for every list, queue and metric: UTF-8 with a byte-order
//! mark so Excel opens Chinese names correctly, quoted by the `csv` crate
//! (commas, quotes and line breaks inside values survive), streamed in
//! chunks so an export of the whole chain never sits in memory at once.

use crate::error::ApiError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::Stream;

/// The byte-order mark Excel needs to read UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the caller wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Format {
    /// JSON (the default).
    Json,
    /// CSV.
    Csv,
}

impl Format {
    /// `format=csv|json` wins; otherwise `Accept: text/csv` asks for CSV.
    pub fn of(req: &HttpRequest, param: Option<&str>) -> Result<Format, ApiError> {
        match param {
            Some("csv") => return Ok(Format::Csv),
            Some("json") => return Ok(Format::Json),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "format: \"{}\" is not csv or json",
                    crate::error::clip(other)
                )))
            }
            None => {}
        }
        let wants_csv = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"));
        Ok(if wants_csv { Format::Csv } else { Format::Json })
    }
}

/// Rows as CSV bytes (no header, no BOM).
pub fn rows<I, R>(rows: I) -> Result<Bytes, ApiError>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(r)
            .map_err(|e| ApiError::Internal(format!("csv: {e}")))?;
    }
    w.into_inner()
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

/// The first chunk of a CSV answer: the BOM and the header line.
pub fn head(columns: &[&str]) -> Result<Bytes, ApiError> {
    let line = rows([columns])?;
    Ok(Bytes::from([BOM, &line[..]].concat()))
}

/// A whole CSV answer held at once (metrics, small queues).
pub fn whole(
    name: &str,
    columns: &[&str],
    body: Vec<Vec<String>>,
) -> Result<HttpResponse, ApiError> {
    let mut bytes = head(columns)?.to_vec();
    bytes.extend_from_slice(&rows(body)?);
    Ok(response(name).body(bytes))
}

/// A CSV answer streamed chunk by chunk.
pub fn streamed<S>(name: &str, chunks: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, ApiError>> + 'static,
{
    response(name).streaming(chunks)
}

fn response(name: &str) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.content_type("text/csv; charset=utf-8").insert_header((
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}.csv\""),
    ));
    r
}
