//! Long-running workflows (sagas) keep their progress as events in their own stream,
//! `workflow-<id>`, written with optimistic concurrency like any aggregate.

use super::{Bank, BankError, Ctx, Work};
use crate::events::{NexumEvent, Payload};
use crate::ids::WorkflowId;
use crate::store::StreamId;

impl Bank {
    /// The events of workflow `id` in order, and the stream's version.
    pub async fn workflow_history(&self, id: &WorkflowId) -> Result<(Vec<NexumEvent>, u64), BankError> {
        let stream = StreamId::of("workflow", id);
        let recorded = self.store.read(&stream, 1).await?;
        let version = recorded.last().map_or(0, |r| r.version);
        let events = recorded
            .iter()
            .map(|r| {
                NexumEvent::from_schema(&r.event)
                    .map_err(|source| BankError::Corrupt { stream: stream.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        Ok((events, version))
    }

    /// Records the next step of workflow `id`, if the workflow is still at `version` (0: not
    /// started). Returns false, writing nothing, if it moved on meanwhile: read it again and
    /// decide again.
    pub async fn record_workflow_step(
        &self,
        ctx: &Ctx,
        id: &WorkflowId,
        version: u64,
        payload: Payload,
    ) -> Result<bool, BankError> {
        if !matches!(
            payload,
            Payload::WorkflowStepCompleted(_) | Payload::WorkflowCompleted(_) | Payload::WorkflowRejected(_)
        ) {
            return Err(BankError::invalid("payload", "a workflow records only workflow events"));
        }
        let mut work = Work::new(ctx, "workflow_step");
        let stream = StreamId::of("workflow", id);
        if version == 0 {
            work.expect_new(&stream);
        } else {
            work.commit.expected.push((stream.clone(), crate::store::ExpectedVersion::Exact(version)));
        }
        work.record(&NexumEvent::new(id, payload), stream)?;
        self.commit(work).await
    }
}
