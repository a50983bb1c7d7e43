//! Bearer-token authentication and roles: no token is a JSON 401 with `WWW-Authenticate: Bearer`
//! (RFC 6750), an unknown one a JSON 403; a known one makes the request's [`Caller`], whose
//! [`Role`] must be at least the route's ([`required_role`]): a GET needs a viewer, every other
//! method an operator, and the routes of [`super::ADMIN_ROUTES`] an admin.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::tokens::{NamedToken, Role, TokenHash};
use super::{ApiError, ApiState, masking};

/// The name of the one plain token (`[api] token`, `EVENTBUS_API_TOKEN`), an admin's.
pub const PLAIN_TOKEN_NAME: &str = "api-token";

/// Who sent a request: the holder of its token, the token's role, and the client's address (when
/// the server knows it). In the request's extensions of every protected route: a handler takes
/// it as `Extension<Caller>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The token's name (`[[api.tokens]] name`), or [`PLAIN_TOKEN_NAME`].
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The client's socket address; `None` where the server does not say (in tests).
    pub address: Option<SocketAddr>,
}

impl Caller {
    /// The caller as audit records and logs name it: `alice (operator)`.
    pub fn who(&self) -> String {
        format!("{} ({})", self.name, self.role)
    }

    /// Whether answers to this caller show personal data in clear: not to viewers.
    pub fn sees_personal_data(&self) -> bool {
        self.role >= Role::Operator
    }

    /// `Ok` if this caller's role is `needed` or above; else the JSON 403 that names the role.
    fn may(&self, needed: Role) -> Result<(), ApiError> {
        if self.role >= needed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {needed} role; token `{}` has {}", self.name, self.role),
        )
        .with_detail("required_role", needed.as_str()))
    }
}

/// The tokens the API knows, by hash: the named ones and the plain admin token.
pub struct Tokens(Vec<(TokenHash, Arc<str>, Role)>);

impl Tokens {
    pub fn new(plain: Option<&str>, named: &[NamedToken]) -> Self {
        let plain = plain.map(|token| (TokenHash::of(token), Arc::from(PLAIN_TOKEN_NAME), Role::Admin));
        let named = named.iter().map(|token| (token.sha256, Arc::from(token.name.as_str()), token.role));
        Self(plain.into_iter().chain(named).collect())
    }

    /// The name and role of `given`. Every hash is compared in full, whichever matches, so that
    /// the time taken says nothing about the tokens.
    fn find(&self, given: &str) -> Option<(Arc<str>, Role)> {
        let given = TokenHash::of(given);
        let mut found = None;
        for (hash, name, role) in &self.0 {
            if constant_time_eq(given.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some((Arc::clone(name), *role));
            }
        }
        found
    }
}

/// The role `method` on the route `path` (as the router has it: `/commands/{kind}`) needs: an
/// admin for the routes of [`super::ADMIN_ROUTES`]; else a viewer to read (GET, HEAD), and an
/// operator for anything else, which changes something.
pub fn required_role(method: &Method, path: &str) -> Role {
    if super::ADMIN_ROUTES.iter().any(|(admin_method, admin_path)| admin_method == method && *admin_path == path) {
        Role::Admin
    } else if matches!(*method, Method::GET | Method::HEAD) {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// Authenticates the bearer token, checks the route's [`required_role`], puts the [`Caller`]
/// into the request's extensions, and masks the JSON answers of a viewer. A route layer: it
/// runs for the routes it is applied to, once the router has matched one.
pub async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer_token);
    let Some(given) = given else {
        let mut refusal = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
        )
        .into_response();
        refusal.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"eventbus\""));
        return Ok(refusal);
    };
    let tokens = &state.0.tokens;
    let Some((name, role)) = tokens.find(given) else {
        let message = if tokens.0.is_empty() {
            "no API token is configured: add [[api.tokens]] (see `eventbus token new`) to the config file, \
             or set EVENTBUS_API_TOKEN"
        } else {
            "the token is not valid"
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
    };
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| *address);
    let caller = Caller { name: name.to_string(), role, address };
    let path = request.extensions().get::<MatchedPath>().map_or(request.uri().path(), MatchedPath::as_str);
    refuse_below(&caller, required_role(request.method(), path), &request)?;
    let sees_personal_data = caller.sees_personal_data();
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    Ok(if sees_personal_data { response } else { masking::mask_json(response).await })
}

/// [`Caller::may`], with the refusal logged (the caller's name and role, never the token).
fn refuse_below(caller: &Caller, role: Role, request: &Request) -> Result<(), ApiError> {
    caller.may(role).inspect_err(|_| {
        tracing::info!(
            caller = %caller.who(),
            address = ?caller.address,
            method = %request.method(),
            path = request.uri().path(),
            required = %role,
            "Refused: the caller's role is too low"
        );
    })
}

/// The token of an `Authorization` value: the scheme is case-insensitive (RFC 9110 section
/// 11.1), so `Bearer`, `bearer` and `BEARER` all name it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// Compares without stopping at the first difference, so the time taken does not reveal how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, constant_time_eq};

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_required() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    #[test]
    fn equal_tokens_match_and_others_do_not() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
