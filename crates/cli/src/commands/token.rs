//! `eventbus token new|hash`: API tokens for `[[api.tokens]]`, of which the config file keeps only
//! the SHA-256. Tokens go to stdout only, never to a log.

use std::io::{Read, Write};

use anyhow::{Context, bail};

use crate::api::Role;
use crate::api::tokens::{self, NamedToken, TokenHash};
use crate::cli::Token;

/// The longest token `hash` reads, in bytes.
const MAX_TOKEN_BYTES: u64 = 4096;

pub fn run(command: Token) -> anyhow::Result<()> {
    match command {
        Token::New { name, role } => new(&name, role),
        Token::Hash { name, role } => hash(name.zip(role)),
    }
}

fn new(name: &str, role: Role) -> anyhow::Result<()> {
    check_name(name, role)?;
    let token = tokens::generate().context("cannot get random bytes from the operating system")?;
    let block = tokens::toml_block(name, role, TokenHash::of(&token));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}\n\n{block}")?;
    say!("The first line is the token, shown this once: hand it to {name}. Paste the block into the config file.");
    Ok(())
}

fn hash(named: Option<(String, Role)>) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut input)
        .context("cannot read the token from stdin")?;
    if input.len() as u64 > MAX_TOKEN_BYTES {
        bail!("the token on stdin is longer than {MAX_TOKEN_BYTES} bytes");
    }
    // As the API reads `Authorization: Bearer <token>`: surrounding white space is not part of it.
    let token = input.trim();
    if token.is_empty() {
        bail!("no token on stdin: pipe one in, e.g. `printf %s \"$TOKEN\" | eventbus token hash`");
    }
    let hash = TokenHash::of(token);
    let mut out = std::io::stdout().lock();
    match named {
        Some((name, role)) => {
            check_name(&name, role)?;
            write!(out, "{}", tokens::toml_block(&name, role, hash))?;
        }
        None => writeln!(out, "{}", hash.to_hex())?,
    }
    Ok(())
}

/// A name the config accepts.
fn check_name(name: &str, role: Role) -> anyhow::Result<()> {
    let token = NamedToken { name: name.to_owned(), role, sha256: TokenHash::of("") };
    Ok(tokens::check(std::slice::from_ref(&token))?)
}
