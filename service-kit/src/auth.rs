//! JWT authentication of `/api/{user_id}/…` routes.
//!
//! Tokens are HS256 with a shared secret; `sub` is the user id and `exp` is required. A missing,
//! malformed, badly signed or expired token is `401`; a valid token for another user than the
//! path's `{user_id}` is `403`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use event_store::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// JWT settings. The secret never prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    #[serde(serialize_with = "crate::settings::serialize_secret")]
    pub jwt_secret: SecretString,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from("taskstream-dev-secret-change-me"),
            leeway_seconds: 5,
        }
    }
}

/// The claims Taskstream reads and writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Verifies (and, for tools and tests, mints) tokens.
#[derive(Clone)]
pub struct Jwt {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt").finish_non_exhaustive()
    }
}

impl Jwt {
    pub fn new(settings: &AuthSettings) -> Self {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_seconds;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// The user a valid token speaks for, or why the token is not valid.
    pub fn verify(&self, token: &str) -> Result<UserId, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        UserId::parse(data.claims.sub).map_err(|e| format!("invalid sub: {e}"))
    }

    /// A token for `user` valid for `ttl`.
    pub fn mint(&self, user: &UserId, ttl: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
        };
        // HS256 signing of a small struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
    )
    .detail(detail)
}

/// The authenticated user of an `/api/{user_id}/…` request: the token is valid and its `sub` is
/// the path's `{user_id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Jwt>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let jwt = Arc::<Jwt>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header is not a Bearer token"))?;
        let user = jwt.verify(token.trim()).map_err(|e| unauthorized(&e))?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::not_found())?;
        let path_user = params
            .iter()
            .find(|(name, _)| *name == "user_id")
            .map(|(_, value)| value)
            .ok_or_else(Problem::not_found)?;
        if path_user != user.as_str() {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "This token does not grant access to that user",
            ));
        }
        Ok(AuthUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: &str) -> Jwt {
        Jwt::new(&AuthSettings {
            jwt_secret: SecretString::from(secret.to_owned()),
            leeway_seconds: 0,
        })
    }

    #[test]
    fn a_minted_token_verifies_as_its_user() {
        let user = UserId::parse("alice").expect("valid");
        let jwt = jwt("s3cret");
        assert_eq!(
            jwt.verify(&jwt.mint(&user, Duration::from_secs(60))),
            Ok(user)
        );
    }

    #[test]
    fn tokens_signed_with_another_secret_or_expired_or_garbage_are_rejected() {
        let user = UserId::parse("alice").expect("valid");
        let other = jwt("other").mint(&user, Duration::from_secs(60));
        assert!(jwt("s3cret").verify(&other).is_err());
        let expired = Claims {
            sub: "alice".into(),
            exp: 1,
            iat: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("encode");
        assert!(jwt("s3cret").verify(&token).is_err());
        assert!(jwt("s3cret").verify("not.a.token").is_err());
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": "alice" }),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("encode");
        assert!(jwt("s3cret").verify(&no_exp).is_err());
    }
}
