//! `POST /v1/erasures`: head office erases a customer's personal data
//! (crypto-shredding, see `aftercase_sync::case::seal`). The relay writes
//! the erasure into each case (audited as the caller's change), destroys
//! the case's key, and every device destroys its copy when it next syncs.

use super::cases::{blocking, principal, resolve_case};
use crate::error::{ApiError, ErrorBody};
use crate::state::{now_millis, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use aftercase_sync::access::Role;
use aftercase_sync::relay::{EraseEntropy, EraseError};
use aftercase_sync::CaseId;
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to erase: every case of the customer with this phone, or one case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The customer's phone number: every case whose customer has it.
    #[serde(default)]
    pub customer_phone: Option<String>,
    /// One case, by id or case number.
    #[serde(default)]
    pub case: Option<String>,
}

/// One case whose customer data is now erased.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedCase {
    /// The case id.
    pub case: String,
    /// Its case number.
    pub case_no: Option<String>,
    /// Whether the customer's data was sealed in the case's history, so
    /// destroying the key erased it from every copy. `false` for a case
    /// written before sealing (by an older app): its current fields are
    /// cleared, but its history still holds the old values.
    pub history_sealed: bool,
}

/// The answer of `POST /v1/erasures`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EraseAnswer {
    /// Cases erased now.
    pub erased: Vec<ErasedCase>,
    /// Cases that had been erased before (ids).
    pub already_erased: Vec<String>,
}

fn bad(e: EraseError) -> ApiError {
    match e {
        EraseError::UnknownCase(c) => super::cases::not_found(c),
        EraseError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Erase a customer's personal data.
///
/// `POST /v1/erasures` (head office only), with `customer_phone` or `case`:
/// the cases' customer name, phone, address and member number become
/// unreadable in every copy of their history (the relay destroys each
/// case's key; devices destroy theirs when they next sync), while the rest
/// of each case stays. Answered once the erasure is durable.
#[utoipa::path(
    post,
    path = "/v1/erasures",
    tag = "privacy",
    request_body = EraseRequest,
    responses(
        (status = 200, description = "Erased (durably).", body = EraseAnswer),
        (status = 400, description = "Neither or both of customer_phone and case, or a phone with fewer than 5 digits.", body = ErrorBody),
        (status = 401, description = "No valid token, or a revoked one.", body = ErrorBody),
        (status = 403, description = "Not head office.", body = ErrorBody),
        (status = 404, description = "No case at this relay holds that customer, or no such case.", body = ErrorBody),
    )
)]
pub async fn erase(
    req: HttpRequest,
    body: web::Json<EraseRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = principal(&req, &state)?;
    if p.role != Role::HeadOffice {
        return Err(ApiError::Forbidden(format!(
            "only head office may erase a customer's personal data, not a {}",
            p.role
        )));
    }
    let body = body.into_inner();
    let single = match (&body.customer_phone, &body.case) {
        (Some(_), None) => None,
        (None, Some(c)) => Some(resolve_case(&state, &p, c).await?),
        _ => {
            return Err(ApiError::BadRequest(
                "name either customer_phone or case".into(),
            ))
        }
    };
    if let Some(phone) = &body.customer_phone {
        if phone.chars().filter(char::is_ascii_digit).count() < 5 {
            return Err(ApiError::BadRequest(
                "customer_phone needs at least 5 digits".into(),
            ));
        }
    }
    let by = p.clone();
    let (answer, stores) = blocking(&state, move |s| {
        let mut relay = s.relay();
        let cases: Vec<CaseId> = match (single, &body.customer_phone) {
            (Some(c), _) => vec![c],
            (None, Some(phone)) => relay.cases_of_phone(phone)?,
            (None, None) => Vec::new(),
        };
        if cases.is_empty() {
            return Err(ApiError::NotFound(
                "no case at this relay holds a customer with this phone (erased cases hold none)"
                    .into(),
            ));
        }
        let mut answer = EraseAnswer {
            erased: Vec::new(),
            already_erased: Vec::new(),
        };
        let mut stores = Vec::new();
        for case in cases {
            if relay.erasure(case)?.is_some() {
                answer.already_erased.push(case.to_string());
                continue;
            }
            let history_sealed = relay.case_key(case)?.is_some();
            let case_no = relay.summary(case)?.and_then(|s| s.case_no);
            let entropy = EraseEntropy {
                actor: rand::rng().random(),
                nonce: rand::rng().random(),
            };
            let mut out = relay.erase(case, &by, now_millis(), entropy).map_err(bad)?;
            s.note_seq(&relay);
            if let Some(summary) = out.summary.take() {
                s.stage_summary(relay.seq(), case, *summary);
            }
            stores.push(out.changed_store);
            answer.erased.push(ErasedCase {
                case: case.to_string(),
                case_no,
                history_sealed,
            });
        }
        Ok((answer, stores))
    })
    .await?;
    let ticket = state.ticket();
    state.make_durable(ticket).await?;
    for store in &stores {
        state.wake(store.as_ref());
    }
    // Ids and counts only: never the phone.
    tracing::info!(
        by = %p.user,
        erased = answer.erased.len(),
        already = answer.already_erased.len(),
        "erased customer personal data"
    );
    Ok(HttpResponse::Ok().json(answer))
}
