//! API tokens with roles. The config file holds only the SHA-256 of each token
//! (`[[api.tokens]]`), never the token itself; `eventbus token new` makes one and `eventbus token
//! hash` hashes one.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// What a token may do. Ordered: a role may do everything the roles below it may.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, with personal data (names, emails, phones) masked.
    Viewer,
    /// Reads in clear, and submits commands and other changes to the bank's data.
    Operator,
    /// Also changes the bus itself (`POST /kafka/config`).
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a token. Its `Debug` shows nothing of it: a hash is not logged either.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(sha2::Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters written in the config file.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// Why a `sha256` of the config file is not a token hash.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "sha256 must be 64 hex characters, the SHA-256 of the token (`eventbus token hash` prints it); this one has {0} characters{1}"
)]
pub struct InvalidHash(usize, &'static str);

impl TryFrom<String> for TokenHash {
    type Error = InvalidHash;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let text = text.trim();
        let mut hash = [0; 32];
        match hex::decode_to_slice(text, &mut hash) {
            Ok(()) => Ok(Self(hash)),
            Err(hex::FromHexError::InvalidHexCharacter { .. }) => Err(InvalidHash(text.len(), ", not all of them hex")),
            Err(_) => Err(InvalidHash(text.len(), "")),
        }
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// One `[[api.tokens]]` entry: a named token with a role, known by its hash.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Who holds the token: shown in logs and audit records, never the token.
    pub name: String,
    /// viewer, operator or admin.
    pub role: Role,
    /// The SHA-256 of the token, in hex.
    pub sha256: TokenHash,
}

/// Why a set of named tokens cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokensError {
    #[error("api.tokens: a token's name must be 1 to 100 printable characters, got {0:?}")]
    InvalidName(String),
    #[error("api.tokens: the name `{0}` is given to two tokens; each needs its own")]
    DuplicateName(String),
    #[error("api.tokens: `{0}` and `{1}` have the same sha256, so the same token; each needs its own")]
    DuplicateHash(String, String),
}

/// Checks that every token has a name of its own and a hash of its own, so that a caller is
/// always one named token with one role.
pub fn check(tokens: &[NamedToken]) -> Result<(), TokensError> {
    for (i, token) in tokens.iter().enumerate() {
        let name = &token.name;
        if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(TokensError::InvalidName(name.clone()));
        }
        for earlier in &tokens[..i] {
            if earlier.name == token.name {
                return Err(TokensError::DuplicateName(name.clone()));
            }
            if earlier.sha256 == token.sha256 {
                return Err(TokensError::DuplicateHash(earlier.name.clone(), name.clone()));
            }
        }
    }
    Ok(())
}

/// A new random token: 32 bytes from the operating system, in hex.
pub fn generate() -> Result<String, rand::rand_core::OsError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The `[[api.tokens]]` block that gives the token hashed as `hash` to `name` with `role`.
pub fn toml_block(name: &str, role: Role, hash: TokenHash) -> String {
    let name = toml::Value::String(name.to_owned());
    format!("[[api.tokens]]\nname = {name}\nrole = \"{role}\"\nsha256 = \"{}\"\n", hash.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_the_sha256_of_the_token_in_hex() {
        // Given the token "abc", whose SHA-256 is well known
        // When it is hashed, then the hex is the known one, and it reads back
        let hash = TokenHash::of("abc");
        assert_eq!(hash.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(TokenHash::try_from(hash.to_hex().to_uppercase()), Ok(hash));
        assert!(!format!("{hash:?}").contains("ba7816"), "a hash is never shown");
    }

    #[test]
    fn a_hash_that_is_not_64_hex_characters_is_refused_clearly() {
        for text in ["", "abc", &"a".repeat(63), &"a".repeat(65), &"g".repeat(64)] {
            let error = TokenHash::try_from(text.to_owned()).unwrap_err().to_string();
            assert!(error.contains("64 hex characters") && error.contains("eventbus token hash"), "{error}");
        }
    }

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::ALL.map(Role::as_str), ["viewer", "operator", "admin"]);
    }

    #[test]
    fn names_and_hashes_must_each_be_unique() {
        let token = |name: &str, secret: &str| NamedToken {
            name: name.into(),
            role: Role::Viewer,
            sha256: TokenHash::of(secret),
        };
        assert_eq!(check(&[token("alice", "a"), token("bob", "b")]), Ok(()));
        assert_eq!(check(&[token("alice", "a"), token("alice", "b")]), Err(TokensError::DuplicateName("alice".into())));
        assert_eq!(
            check(&[token("alice", "a"), token("bob", "a")]),
            Err(TokensError::DuplicateHash("alice".into(), "bob".into()))
        );
        assert_eq!(check(&[token(" ", "a")]), Err(TokensError::InvalidName(" ".into())));
    }

    #[test]
    fn a_generated_token_is_64_hex_characters_and_new_each_time() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
