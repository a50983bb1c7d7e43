//! What the bank records about commands themselves: that one was handled, or why it was refused.

use super::{Bank, BankError, Ctx, MAX_ATTEMPTS, Work, retrying};
use crate::events::{CommandRejected, NexumEvent, Payload};
use crate::ids::CommandId;
use crate::store::StreamId;

impl Bank {
    /// Whether command `id` has had its effect, or its refusal, recorded.
    pub async fn command_handled(&self, id: &CommandId) -> Result<bool, BankError> {
        Ok(self.store.stream_version(&StreamId::of("command", id)).await? > 0)
    }

    /// Records that the command of `ctx` was refused, and why, with an audit record: once per
    /// command, like its effect would have been. A command handled before gets
    /// [`BankError::DuplicateCommand`] and nothing is written.
    pub async fn reject_command(&self, ctx: &Ctx, rejection: CommandRejected) -> Result<(), BankError> {
        let id = ctx.command.clone().ok_or_else(|| BankError::invalid("command", "only a command can be rejected"))?;
        let event = NexumEvent::new(&id, Payload::CommandRejected(rejection));
        retrying!({
            let mut work = Work::new(ctx, "reject_command");
            let stream = StreamId::of("command", &id);
            work.expect_new(&stream);
            work.record(&event, stream)?;
            work.outcome = "rejected";
            Ok(self.commit(work).await?.then_some(()))
        })
    }
}
