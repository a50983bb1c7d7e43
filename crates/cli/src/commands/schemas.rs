//! `eventbus schemas list|show|validate`: the JSON Schemas of the Nexum events, embedded in the
//! binary, so none of these needs a backend.
//!
//! `validate` works like a linter: each invalid event with its line number and what is wrong,
//! then `N valid, M invalid`, on stdout; the command fails if any event is invalid. A file is
//! one JSON event, pretty-printed or not, when its first line does not hold a whole JSON value;
//! otherwise it is JSON lines, one event per line, and a malformed line is reported and skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use nexum::events::EventTypeInfo;
use nexum::schemas::{SchemaError, SchemaRegistry};
use serde_json::Value;

use crate::cli::Schemas;

pub fn run(command: Schemas) -> anyhow::Result<()> {
    match command {
        Schemas::List => list(),
        Schemas::Show { event_type, version } => show(&event_type, version),
        Schemas::Validate { file } => validate(&file),
    }
}

fn list() -> anyhow::Result<()> {
    let schemas: Vec<_> = SchemaRegistry::global().list().collect();
    let width = schemas.iter().map(|s| s.event_type.len()).max().unwrap_or(10).max(10);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:width$}  {:>7}  TOPIC", "EVENT_TYPE", "VERSION")?;
    for schema in schemas {
        writeln!(out, "{:width$}  {:>7}  {}", schema.event_type, schema.major, schema.topic)?;
    }
    Ok(())
}

fn show(event_type: &str, version: Option<u32>) -> anyhow::Result<()> {
    let registry = SchemaRegistry::global();
    let info = EventTypeInfo::of(event_type)
        .ok_or_else(|| anyhow!("unknown event type `{event_type}`; `eventbus schemas list` shows the known ones"))?;
    let major = version.unwrap_or(info.major);
    let schema = registry.get(event_type, major).ok_or_else(|| {
        let known: Vec<String> =
            registry.list().filter(|s| s.event_type == event_type).map(|s| s.major.to_string()).collect();
        anyhow!("no version {major} of `{event_type}`; known versions: {}", known.join(", "))
    })?;
    std::io::stdout().lock().write_all(schema.as_bytes())?;
    Ok(())
}

/// What `validate` found.
#[derive(Default)]
struct Tally {
    valid: u64,
    invalid: u64,
}

fn validate(file: &Path) -> anyhow::Result<()> {
    let (name, input): (String, Box<dyn BufRead>) = if file.as_os_str() == "-" {
        ("stdin".to_owned(), Box::new(std::io::stdin().lock()))
    } else {
        let opened = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        (file.display().to_string(), Box::new(BufReader::new(opened)))
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut tally = Tally::default();
    check_all(input, &name, &mut out, &mut tally)?;
    writeln!(out, "{} valid, {} invalid", tally.valid, tally.invalid)?;
    out.flush()?;
    if tally.invalid > 0 {
        bail!("{} of {} event(s) in {name} invalid", tally.invalid, tally.valid + tally.invalid);
    }
    Ok(())
}

fn check_all(mut input: impl BufRead, name: &str, out: &mut impl Write, tally: &mut Tally) -> anyhow::Result<()> {
    let registry = SchemaRegistry::global();
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut first = true;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).with_context(|| format!("cannot read {name} after line {number}"))? == 0 {
            return Ok(());
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(line.trim_ascii_end());
        if first && parsed.as_ref().is_err_and(serde_json::Error::is_eof) {
            // The first value goes on past its line: the file is one (pretty-printed) event.
            input.read_to_end(&mut line).with_context(|| format!("cannot read {name} after line {number}"))?;
            let parsed = serde_json::from_slice::<Value>(line.trim_ascii_end());
            return report(out, tally, registry, number, parsed);
        }
        first = false;
        report(out, tally, registry, number, parsed)?;
    }
}

/// Checks one event that starts on line `number` and writes what is wrong with it.
fn report(
    out: &mut impl Write,
    tally: &mut Tally,
    registry: &SchemaRegistry,
    number: u64,
    parsed: serde_json::Result<Value>,
) -> anyhow::Result<()> {
    let document = match parsed {
        Ok(document) => document,
        Err(error) => {
            tally.invalid += 1;
            // serde_json counts lines from the start of what it was given.
            let line = number + error.line().saturating_sub(1) as u64;
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = error.to_string();
            let message = message.strip_suffix(&position).unwrap_or(&message);
            writeln!(out, "line {line}, column {}: malformed JSON: {message}", error.column())?;
            return Ok(());
        }
    };
    let Err(error) = registry.validate_json(&document) else {
        tally.valid += 1;
        return Ok(());
    };
    tally.invalid += 1;
    let id = match document.get("event_id").and_then(Value::as_str) {
        // Quoted as JSON, so that control characters in it reach the terminal escaped.
        Some(id) => format!(" (event_id {})", Value::from(id)),
        None => String::new(),
    };
    match error {
        SchemaError::Invalid { event_type, version, errors } => {
            writeln!(out, "line {number}{id}: invalid `{event_type}` event, version {version}:")?;
            for error in errors {
                writeln!(out, "  {error}")?;
            }
        }
        other => writeln!(out, "line {number}{id}: {other}")?,
    }
    Ok(())
}
