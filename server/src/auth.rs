//! Token issue and verification. HS256 only: the algorithm is pinned, and
//! signature, `exp`, `nbf`, `aud` and `iss` are all checked, with at most
//! [`LEEWAY_SECS`] of clock skew. Every token carries a random id (`jti`)
//! and its issue time (`iat`) so an operator can revoke it (see
//! [`crate::revoke`]).

use crate::error::clip;
use aftercase_sync::access::{Principal, Role};
use aftercase_sync::{DeviceId, StoreId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` every token carries.
pub const ISSUER: &str = "aftercase-relay";
/// The `aud` every token carries.
pub const AUDIENCE: &str = "aftercase";
/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small, because an
/// expired token must stop working promptly; device clocks do not matter
/// here, only the relay's own clock is compared with the claims.
pub const LEEWAY_SECS: u64 = 5;

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
    /// Issued at (seconds). Revocations apply to tokens issued at or
    /// before the revocation; tokens minted before `iat` was required count
    /// as issued at 0.
    #[serde(default)]
    pub iat: u64,
    /// Not before (seconds).
    pub nbf: u64,
    /// Expiry (seconds).
    pub exp: u64,
    /// Random token id, for revoking one token. Tokens minted before ids
    /// existed have none (empty).
    #[serde(default)]
    pub jti: String,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who is calling.
    pub principal: Principal,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issue time (seconds since the epoch; 0 when absent).
    pub iat: u64,
    /// The token id (empty for old tokens without one).
    pub jti: String,
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
    /// The operator revoked the token, its device or its user.
    #[error(transparent)]
    Revoked(#[from] crate::revoke::Revoked),
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
        validation.leeway = LEEWAY_SECS;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `p`, valid for `ttl_secs` from `now_secs`, with a
    /// fresh random id. Returns the token and its id.
    pub fn issue(
        &self,
        p: &Principal,
        now_secs: u64,
        ttl_secs: u64,
    ) -> Result<(String, String), AuthError> {
        let mut raw = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
        let jti: String = raw.iter().map(|b| format!("{b:02x}")).collect();
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
            jti: jti.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok((token, jti))
    }

    /// Verifies a token's signature and claims. Revocation is checked
    /// separately ([`crate::revoke::Revocations::check`]).
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        // Error texts from the JWT library can quote claim values, which
        // come from whoever sent the token: clip them.
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(clip(&e.to_string())))?;
        let c = data.claims;
        let claims = |e: &dyn std::fmt::Display| AuthError::Claims(clip(&e.to_string()));
        if c.jti.len() > 64 {
            return Err(AuthError::Claims("token id is too long".into()));
        }
        Ok(Verified {
            principal: Principal {
                user: UserId::new(c.sub).map_err(|e| claims(&e))?,
                role: c.role.parse::<Role>().map_err(|e| claims(&e))?,
                store: StoreId::new(c.store).map_err(|e| claims(&e))?,
                device: DeviceId::new(c.device).map_err(|e| claims(&e))?,
            },
            exp: c.exp,
            iat: c.iat,
            jti: c.jti,
        })
    }

    /// Verifies the `Authorization: Bearer` header of a request.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Verified, AuthError> {
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
        let (t, jti) = keys.issue(&p(), now(), 3600).unwrap();
        let v = keys.verify(&t).unwrap();
        assert_eq!(v.principal, p());
        assert_eq!(v.jti, jti);
        assert_eq!(jti.len(), 32);
        assert_ne!(
            keys.issue(&p(), now(), 3600).unwrap().1,
            jti,
            "ids are random"
        );
        let other = Keys::new(&[8; 32]);
        assert!(matches!(other.verify(&t), Err(AuthError::Invalid(_))));
        assert!(keys.verify("not.a.token").is_err());
        assert!(matches!(keys.verify_header(None), Err(AuthError::Missing)));
    }

    #[test]
    fn rejects_expired_and_foreign_algorithms() {
        let keys = Keys::new(&[7; 32]);
        let (old, _) = keys.issue(&p(), now() - 10_000, 60).unwrap();
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
            jti: String::new(),
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

    #[test]
    fn leeway_is_at_most_five_seconds_and_old_tokens_without_id_still_work() {
        let keys = Keys::new(&[7; 32]);
        let sign = |v: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &v,
                &EncodingKey::from_secret(&[7; 32]),
            )
            .unwrap()
        };
        let base = |exp: u64| {
            serde_json::json!({"sub":"alice","role":"staff","store":"S1","device":"tab1",
                "iss":ISSUER,"aud":AUDIENCE,"iat":now()-100,"nbf":now()-100,"exp":exp})
        };
        assert!(keys.verify(&sign(base(now() - 20))).is_err(), "20 s late");
        let old = keys.verify(&sign(base(now() + 600))).unwrap();
        assert_eq!(old.jti, "", "no id: treated as empty");
        let mut no_iat = base(now() + 600);
        no_iat.as_object_mut().unwrap().remove("iat");
        assert_eq!(keys.verify(&sign(no_iat)).unwrap().iat, 0);
    }
}
