//! Token issue and verification. HS256 only: the algorithm is pinned, and
//! signature, `exp`, `nbf`, `aud` and `iss` are all checked.

use aftercase_sync::access::{Principal, Role};
use aftercase_sync::{DeviceId, StoreId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` every token carries.
pub const ISSUER: &str = "aftercase-relay";
/// The `aud` every token carries.
pub const AUDIENCE: &str = "aftercase";

/// Claims of a device token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// staff, technician, supervisor or head_office.
    pub role: String,
    /// Store the device belongs to.
    pub store: String,
    /// Device id.
    pub device: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Not before (seconds).
    pub nbf: u64,
    /// Expiry (seconds).
    pub exp: u64,
}

/// Why a token was not accepted. Messages never echo the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Signature, expiry, audience, issuer or format is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Claims are present but not acceptable (unknown role, bad id).
    #[error("invalid token claims: {0}")]
    Claims(String),
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 30;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `p`, valid for `ttl_secs` from `now_secs`.
    pub fn issue(&self, p: &Principal, now_secs: u64, ttl_secs: u64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: p.user.to_string(),
            role: p.role.to_string(),
            store: p.store.to_string(),
            device: p.device.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now_secs,
            nbf: now_secs.saturating_sub(60),
            exp: now_secs.saturating_add(ttl_secs),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Verifies a token and returns the principal and the expiry (seconds).
    pub fn verify(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        let claims = |e: &dyn std::fmt::Display| AuthError::Claims(e.to_string());
        Ok((
            Principal {
                user: UserId::new(c.sub).map_err(|e| claims(&e))?,
                role: c.role.parse::<Role>().map_err(|e| claims(&e))?,
                store: StoreId::new(c.store).map_err(|e| claims(&e))?,
                device: DeviceId::new(c.device).map_err(|e| claims(&e))?,
            },
            c.exp,
        ))
    }

    /// Verifies the `Authorization: Bearer` header of a request.
    pub fn verify_header(&self, header: Option<&str>) -> Result<(Principal, u64), AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Principal {
        Principal {
            user: UserId::new("alice").unwrap(),
            role: Role::Staff,
            store: StoreId::new("S1").unwrap(),
            device: DeviceId::new("tab1").unwrap(),
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn accepts_own_tokens_and_rejects_tampering() {
        let keys = Keys::new(&[7; 32]);
        let t = keys.issue(&p(), now(), 3600).unwrap();
        assert_eq!(keys.verify(&t).unwrap().0, p());
        let other = Keys::new(&[8; 32]);
        assert!(matches!(other.verify(&t), Err(AuthError::Invalid(_))));
        assert!(keys.verify("not.a.token").is_err());
        assert!(matches!(keys.verify_header(None), Err(AuthError::Missing)));
    }

    #[test]
    fn rejects_expired_and_foreign_algorithms() {
        let keys = Keys::new(&[7; 32]);
        let old = keys.issue(&p(), now() - 10_000, 60).unwrap();
        let e = keys.verify(&old).unwrap_err();
        assert!(e.to_string().contains("Expired"), "{e}");
        // Same secret, different algorithm: refused because HS256 is pinned.
        let claims = Claims {
            sub: "alice".into(),
            role: "staff".into(),
            store: "S1".into(),
            device: "tab1".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now(),
            nbf: now(),
            exp: now() + 600,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert!(keys.verify(&hs512).is_err());
        let wrong_aud = Claims {
            aud: "someone-else".into(),
            ..claims.clone()
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &wrong_aud,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert!(keys.verify(&t).is_err());
        let bad_role = Claims {
            role: "admin".into(),
            ..claims
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &bad_role,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert!(matches!(keys.verify(&t), Err(AuthError::Claims(_))));
    }
}
