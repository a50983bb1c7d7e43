//! Hands delivered messages to a command's loop one at a time. The handler returns only once the
//! loop has acknowledged the message, so the bus commits exactly what the loop finished: a
//! message the loop never took (after `--max`, on idle exit or Ctrl-C) is delivered again later.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{EventBus, Handler, HandlerError, Message, handler_fn};
use tokio::sync::{mpsc, oneshot, watch};

/// A message and the outcome its handler waits for.
pub struct Delivery {
    pub message: Message,
    ack: oneshot::Sender<Result<(), HandlerError>>,
}

impl Delivery {
    /// Marks the message done; its offset may now be committed.
    pub fn ack(self) {
        // The handler is gone only if the bus is stopping; then it is redelivered anyway.
        let _ = self.ack.send(Ok(()));
    }

    /// Fails the message: the bus retries it, then dead-letters it with `error`.
    pub fn fail(self, error: HandlerError) {
        let _ = self.ack.send(Err(error));
    }
}

pub struct Inbox {
    deliveries: mpsc::Receiver<Delivery>,
    /// Turns true on Ctrl-C or SIGTERM, whenever it arrives.
    interrupted: watch::Receiver<bool>,
}

/// A handler to subscribe with, and the inbox it delivers to.
pub fn inbox() -> (Arc<dyn Handler>, Inbox) {
    let (tx, deliveries) = mpsc::channel::<Delivery>(1);
    let handler = handler_fn(move |message| {
        let tx = tx.clone();
        async move {
            let (ack, acked) = oneshot::channel();
            let stopping = || HandlerError::msg("the consumer is stopping");
            tx.send(Delivery { message, ack }).await.map_err(|_| stopping())?;
            acked.await.map_err(|_| stopping())?
        }
    });
    let (interrupt, interrupted) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown_signal() => { let _ = interrupt.send(true); }
            () = interrupt.closed() => {}
        }
    });
    (handler, Inbox { deliveries, interrupted })
}

/// Why a read loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Max,
    Idle,
    Interrupted,
}

impl Inbox {
    /// The next delivery; `None` after `idle` without one, or on Ctrl-C.
    pub async fn next(&mut self, idle: Option<Duration>) -> Result<Delivery, End> {
        let idle = async {
            match idle {
                Some(idle) => tokio::time::sleep(idle).await,
                None => std::future::pending().await,
            }
        };
        if *self.interrupted.borrow() {
            return Err(End::Interrupted);
        }
        tokio::select! {
            delivery = self.deliveries.recv() => delivery.ok_or(End::Interrupted),
            () = idle => Err(End::Idle),
            _ = self.interrupted.changed() => Err(End::Interrupted),
        }
    }

    /// Stops the bus, then drops the inbox so that handlers waiting on it give up. Nothing they
    /// held is committed. `join` polls `stop` first, so the bus knows it is stopping before any
    /// handler fails.
    pub async fn close(self, bus: &dyn EventBus) -> anyhow::Result<()> {
        let (stopped, ()) = futures::future::join(bus.stop(), async move { drop(self) }).await;
        Ok(stopped?)
    }
}

/// Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
