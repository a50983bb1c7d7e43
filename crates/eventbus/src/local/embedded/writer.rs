//! The writer thread: the one place that writes the store. It takes every operation waiting,
//! applies them in one transaction (each in its own savepoint, so one that fails leaves the
//! others in), commits with one fsync for all (group commit), then answers each.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::error::EmbeddedError;
use super::sql;
use crate::bus::{GroupId, Partition, Published};
use crate::local::ends::PartitionEnds;
use crate::runtime::Position;
use crate::topics::TopicName;

/// Operations the writer thread takes at most in one transaction.
const MAX_GROUP: usize = 4096;
/// How long the writer waits for work before it looks at retention again.
const IDLE_WAKEUP: Duration = Duration::from_secs(10);

/// Where the writer sends the result of one operation.
pub(super) type Reply<T> = oneshot::Sender<Result<T, EmbeddedError>>;

/// One write, applied by the writer thread in a transaction shared with the others waiting.
pub(super) enum WriteOp {
    /// Appends records, each to its topic, in order.
    Append {
        records: Vec<sql::AppendRecord>,
        reply: Reply<Vec<Published>>,
    },
    /// Commits a group's positions in a topic.
    Commit {
        group: GroupId,
        topic_id: i64,
        positions: Vec<(Partition, Position)>,
        reply: Reply<()>,
    },
    /// Creates the topics that are missing; replies with the names that existed already.
    /// Renews a member of a group and deals it its share of the partitions (`sql::claim`).
    Claim {
        group: GroupId,
        owner: String,
        partitions: Vec<sql::PartitionId>,
        ttl_ms: i64,
        reply: Reply<Claimed>,
    },
    /// Deletes a group's offsets and leases.
    DeleteGroup {
        group: GroupId,
        reply: Reply<()>,
    },
    /// Gives partitions up.
    Release {
        group: GroupId,
        owner: String,
        partitions: Vec<sql::PartitionId>,
        reply: Reply<()>,
    },
    /// Ends a membership and gives up its partitions.
    Leave {
        group: GroupId,
        owner: String,
        reply: Reply<()>,
    },
    CreateTopics {
        topics: Vec<(TopicName, u32)>,
        reply: Reply<Vec<TopicName>>,
    },
}

/// What the writer thread keeps besides its connection.
struct Context {
    path: PathBuf,
    retention: Option<Duration>,
    /// Moved after each commit to where the partitions it appended to end, which wakes their
    /// consumers.
    ends: Arc<PartitionEnds>,
}

/// Starts the writer thread on `conn`; returns where to send operations. After each commit that
/// appended records it moves `ends`. The thread ends when every sender is dropped.
pub(super) fn spawn(
    conn: Connection,
    path: PathBuf,
    retention: Option<Duration>,
    ends: Arc<PartitionEnds>,
) -> Result<mpsc::Sender<WriteOp>, EmbeddedError> {
    let context = Context { path, retention, ends };
    let (ops, received) = mpsc::channel();
    std::thread::Builder::new()
        .name("eventbus-writer".into())
        .spawn(move || write_loop(conn, received, &context))
        .map_err(EmbeddedError::Spawn)?;
    Ok(ops)
}

/// The writer thread: takes every operation waiting, applies them in one transaction, commits
/// (one fsync for all), then answers each.
fn write_loop(mut conn: Connection, ops: mpsc::Receiver<WriteOp>, shared: &Context) {
    // Retention runs ten times per retention period, at most every 10 s and at least every 100 ms.
    let retention = shared.retention.map(|r| (r, (r / 10).clamp(Duration::from_millis(100), IDLE_WAKEUP)));
    let mut last_retention: Option<Instant> = None;
    loop {
        if let Some((retention, every)) = retention
            && last_retention.is_none_or(|t| t.elapsed() >= every)
        {
            if let Err(error) = sql::apply_retention(&mut conn, retention) {
                tracing::error!(%error, "Retention failed; will retry");
            }
            last_retention = Some(Instant::now());
        }
        let first = match ops.recv_timeout(retention.map_or(IDLE_WAKEUP, |(_, every)| every)) {
            Ok(op) => op,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, batch, shared);
    }
}

enum Outcome {
    Published(Reply<Vec<Published>>, Result<Vec<Published>, EmbeddedError>),
    Committed(Reply<()>, Result<(), EmbeddedError>),
    Created(Reply<Vec<TopicName>>, Result<Vec<TopicName>, EmbeddedError>),
    Claimed(Reply<Claimed>, Result<Claimed, EmbeddedError>),
}

/// The partitions a member holds, and those it must give up (`sql::claim`).
pub(super) type Claimed = (Vec<sql::PartitionId>, Vec<sql::PartitionId>);

impl Outcome {
    fn failed(&self) -> bool {
        match self {
            Self::Published(_, r) => r.is_err(),
            Self::Committed(_, r) => r.is_err(),
            Self::Created(_, r) => r.is_err(),
            Self::Claimed(_, r) => r.is_err(),
        }
    }

    /// Replaces a success by `error`: the transaction that held it did not commit.
    fn fail(self, error: &impl Fn() -> EmbeddedError) -> Self {
        match self {
            Self::Published(reply, r) => Self::Published(reply, r.and_then(|_| Err(error()))),
            Self::Committed(reply, r) => Self::Committed(reply, r.and_then(|_| Err(error()))),
            Self::Created(reply, r) => Self::Created(reply, r.and_then(|_| Err(error()))),
            Self::Claimed(reply, r) => Self::Claimed(reply, r.and_then(|_| Err(error()))),
        }
    }

    fn send(self) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Self::Published(reply, r) => reply.send(r).map_err(drop),
            Self::Committed(reply, r) => reply.send(r).map_err(drop),
            Self::Created(reply, r) => reply.send(r).map_err(drop),
            Self::Claimed(reply, r) => reply.send(r).map_err(drop),
        };
    }
}

fn apply_batch(conn: &mut Connection, batch: Vec<WriteOp>, shared: &Context) {
    let classify = |e| EmbeddedError::classify(&shared.path, e);
    let shared_error = |e| {
        let error = Arc::new(classify(e));
        move || EmbeddedError::Transaction(Arc::clone(&error))
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            tracing::error!(%error, "Cannot begin a write transaction");
            let error = shared_error(error);
            for op in batch {
                op_outcome_failed(op, &error).send();
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut moved = Vec::new();
    for op in batch {
        // A savepoint per operation: one that fails leaves the others in the transaction.
        let outcome = match tx.savepoint() {
            Ok(sp) => {
                let (outcome, ends) = apply_op(&sp, op);
                let outcome = outcome.map_err_with(classify);
                if outcome.failed() {
                    drop(sp);
                } else if let Err(error) = sp.commit() {
                    tracing::error!(%error, "Savepoint release failed");
                } else {
                    moved.extend(ends);
                }
                outcome
            }
            Err(error) => op_outcome_failed(op, &shared_error(error)),
        };
        outcomes.push(outcome);
    }
    match tx.commit() {
        Ok(()) => {
            // The ends move before the publishers hear back: a consumer woken reads what they
            // were told is stored.
            shared.ends.advance(moved);
            for outcome in outcomes {
                outcome.send();
            }
        }
        Err(error) => {
            tracing::error!(%error, "Write transaction failed to commit");
            let error = shared_error(error);
            for outcome in outcomes {
                outcome.fail(&error).send();
            }
        }
    }
}

fn op_outcome_failed(op: WriteOp, error: &impl Fn() -> EmbeddedError) -> Outcome {
    match op {
        WriteOp::Append { reply, .. } => Outcome::Published(reply, Err(error())),
        WriteOp::Commit { reply, .. } => Outcome::Committed(reply, Err(error())),
        WriteOp::CreateTopics { reply, .. } => Outcome::Created(reply, Err(error())),
        WriteOp::Release { reply, .. } | WriteOp::Leave { reply, .. } | WriteOp::DeleteGroup { reply, .. } => {
            Outcome::Committed(reply, Err(error()))
        }
        WriteOp::Claim { reply, .. } => Outcome::Claimed(reply, Err(error())),
    }
}

/// The raw outcome of one operation, with SQLite errors not yet given their meaning.
enum RawOutcome {
    Published(Reply<Vec<Published>>, rusqlite::Result<Vec<Published>>),
    Committed(Reply<()>, rusqlite::Result<()>),
    Created(Reply<Vec<TopicName>>, rusqlite::Result<Vec<TopicName>>),
    Claimed(Reply<Claimed>, rusqlite::Result<Claimed>),
}

impl RawOutcome {
    fn map_err_with(self, classify: impl Fn(rusqlite::Error) -> EmbeddedError) -> Outcome {
        match self {
            Self::Published(reply, r) => Outcome::Published(reply, r.map_err(&classify)),
            Self::Committed(reply, r) => Outcome::Committed(reply, r.map_err(&classify)),
            Self::Created(reply, r) => Outcome::Created(reply, r.map_err(&classify)),
            Self::Claimed(reply, r) => Outcome::Claimed(reply, r.map_err(&classify)),
        }
    }
}

/// Applies one operation; an append also returns where the partitions it wrote now end.
fn apply_op(conn: &Connection, op: WriteOp) -> (RawOutcome, Vec<(TopicName, Partition, u64)>) {
    let outcome = match op {
        WriteOp::Append { records, reply } => {
            let topics: Vec<TopicName> = records.iter().map(|r| r.topic.clone()).collect();
            let published = sql::append(conn, records);
            let moved = match &published {
                Ok(published) => topics
                    .into_iter()
                    .zip(published)
                    .map(|(t, p)| (t, p.partition, p.offset.map_or(0, |o| o.0 + 1)))
                    .collect(),
                Err(_) => Vec::new(),
            };
            return (RawOutcome::Published(reply, published), moved);
        }
        WriteOp::Commit { group, topic_id, positions, reply } => {
            RawOutcome::Committed(reply, sql::commit(conn, &group, topic_id, &positions))
        }
        WriteOp::CreateTopics { topics, reply } => RawOutcome::Created(reply, sql::create_topics(conn, &topics)),
        WriteOp::Claim { group, owner, partitions, ttl_ms, reply } => {
            RawOutcome::Claimed(reply, sql::claim(conn, &group, &owner, &partitions, ttl_ms))
        }
        WriteOp::DeleteGroup { group, reply } => RawOutcome::Committed(reply, sql::delete_group(conn, &group)),
        WriteOp::Release { group, owner, partitions, reply } => {
            RawOutcome::Committed(reply, sql::release(conn, &group, &owner, &partitions))
        }
        WriteOp::Leave { group, owner, reply } => RawOutcome::Committed(reply, sql::leave(conn, &group, &owner)),
    };
    (outcome, Vec::new())
}
