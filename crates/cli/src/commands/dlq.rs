//! `eventbus dlq list|show|redrive|discard`: find dead letters, fix the cause, send them through
//! again. A redrive or a discard is a request recorded in the letter's dead-letter topic with who
//! asked and from where; the subscription of the letter's group (in a running `serve`, say)
//! carries it out.

use anyhow::Context;
use eventbus::dlq::{self, Action, Actor, Book, Filter, Letter};
use eventbus::{EventBus, GroupId};

use crate::cli::{Dlq, DlqAction, DlqFilter, DlqFormat};
use crate::config::Config;

pub async fn run(config: &Config, command: Dlq) -> anyhow::Result<()> {
    let bus = crate::open_bus(config, crate::Outbox::IfFree).await?;
    let result = match command {
        Dlq::List { filter, format } => list(&*bus, &filter, format).await,
        Dlq::Show { id } => show(&*bus, &id).await,
        Dlq::Redrive(action) => act(&*bus, &action, Action::Redrive).await,
        Dlq::Discard(action) => act(&*bus, &action, Action::Discard).await,
    };
    bus.stop().await?;
    result
}

/// The filter the flags describe.
pub fn filter(flags: &DlqFilter) -> anyhow::Result<Filter> {
    Ok(Filter::parse(
        flags.topic.as_deref(),
        flags.group.as_deref(),
        flags.error.as_deref(),
        flags.since.as_deref(),
        flags.until.as_deref(),
        Some(&flags.state),
    )?)
}

async fn load(bus: &dyn EventBus, filter: &Filter) -> anyhow::Result<Book> {
    dlq::load(bus, filter.topic.as_ref()).await.context("cannot read the dead-letter topics")
}

async fn list(bus: &dyn EventBus, flags: &DlqFilter, format: DlqFormat) -> anyhow::Result<()> {
    let filter = filter(flags)?;
    let book = load(bus, &filter).await?;
    let letters: Vec<&Letter> = book.letters().filter(|l| filter.matches(l)).collect();
    match format {
        DlqFormat::Json => {
            for letter in &letters {
                println!("{}", serde_json::to_string(&letter.summary())?);
            }
        }
        DlqFormat::Table => {
            println!(
                "{:36}  {:17}  {:24}  {:28}  {:10}  {:>7}  ERROR",
                "LETTER", "STATE", "GROUP", "PLACE", "KEY", "REDRIVE"
            );
            for letter in &letters {
                let place =
                    letter.place.as_ref().map(ToString::to_string).unwrap_or_else(|| letter.dlq_topic.to_string());
                let error: String = letter.error.chars().take(60).collect();
                println!(
                    "{:36}  {:17}  {:24}  {:28}  {:10}  {:>7}  {error}",
                    letter.id,
                    letter.state.name(),
                    letter.group.as_ref().map_or("-", GroupId::as_str),
                    place,
                    letter.key.as_deref().unwrap_or("-"),
                    letter.redrive_count,
                );
            }
            println!("{} letters", letters.len());
        }
    }
    Ok(())
}

async fn show(bus: &dyn EventBus, id: &str) -> anyhow::Result<()> {
    let book = load(bus, &Filter::default()).await?;
    let letter = book.get(id).ok_or_else(|| dlq::DlqError::UnknownLetter(id.to_owned()))?;
    println!("{}", serde_json::to_string_pretty(letter)?);
    Ok(())
}

async fn act(bus: &dyn EventBus, flags: &DlqAction, action: Action) -> anyhow::Result<()> {
    let filter = filter(&flags.filter)?;
    if flags.ids.is_empty() && !flags.all {
        anyhow::bail!(
            "name the letters (ids from `eventbus dlq list`), or pass --all to act on every letter the filter matches"
        );
    }
    let book = load(bus, &filter).await?;
    let ids: Vec<String> = if flags.all {
        book.letters().filter(|l| filter.matches(l)).map(|l| l.id.clone()).collect()
    } else {
        flags.ids.clone()
    };
    if flags.dry_run {
        for id in &ids {
            println!("would {action:?} {id}");
        }
        println!("{} letters (dry run: nothing asked)", ids.len());
        return Ok(());
    }
    let acted = dlq::request(bus, &book, &ids, action, &console_actor()).await?;
    let mut requested = 0;
    for result in &acted {
        match &result.reason {
            None => requested += 1,
            Some(reason) => eprintln!("{}: not {}: {reason}", result.id, verb(action)),
        }
    }
    println!("{requested} of {} letters {}", acted.len(), verb(action));
    if requested == 0 {
        anyhow::bail!("nothing was asked for");
    }
    Ok(())
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Redrive => "redriven (requested)",
        Action::Discard => "discarded",
    }
}

/// Who acts from the command line: the user, on this host.
fn console_actor() -> Actor {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    Actor { who: format!("{user} (cli)"), address: format!("cli@{host}") }
}
