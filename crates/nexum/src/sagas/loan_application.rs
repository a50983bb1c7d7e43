//! The seed's `LoanApplicationSaga`: a customer whose KYC becomes verified is offered a
//! pre-approved loan.
//!
//! ```text
//! kyc verified ──> originate ──> loan_originated ──> disburse ──> loan_disbursed: completed
//!                     │                                 │
//!                     └─ rejected: failed               └─ failed or rejected ──> cancel ──> loan_cancelled: failed
//! ```
//!
//! Its progress is recorded in the stream `workflow-<id>` (and so published on
//! `nexum.workflows.*`), one step at a time with optimistic concurrency. The saga's id is
//! derived from the customer, so a customer gets one offer however often the trigger arrives.
//! Every event the saga causes carries its id as `correlation_id`; that is how it finds its
//! state again when the outcome of a command comes back.

use std::sync::Arc;

use eventbus::{Currency, EventBus, GroupId, HandlerError, Message, Subscription, Topic};
use rust_decimal::Decimal;
use serde_json::json;

use super::{Outgoing, Parts, causation, correlation};
use crate::bank::{Bank, BankError, Ctx};
use crate::clock::Clock;
use crate::consumer::typed_handler;
use crate::domain::KycStatus;
use crate::events::{NexumEvent, Payload, WorkflowCompleted, WorkflowRejected, WorkflowStepCompleted};
use crate::ids::{CommandId, CustomerId, LoanId, WorkflowId};

/// The `workflow_type` of the saga's workflow events.
pub const WORKFLOW_TYPE: &str = "loan_application";
/// Its consumer group.
pub const GROUP: &str = "nexum-loan-application-saga";
const ACTOR: &str = "saga:loan_application";

/// The loan offered to a newly verified customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoanOffer {
    /// The amount offered, in `currency`; 1000.00 by default.
    pub principal: Decimal,
    /// The loan's currency; USD by default. The loan is paid into the customer's oldest checking or
    /// savings account in it.
    pub currency: Currency,
    /// Annual rate in percent.
    pub interest_rate: Decimal,
    /// How long the loan runs, in months, repaid monthly; 12 by default.
    pub term_months: u32,
}

impl Default for LoanOffer {
    fn default() -> Self {
        Self {
            principal: Decimal::new(100_000, 2),
            currency: "USD".parse().expect("USD is a currency"),
            interest_rate: Decimal::new(75, 1),
            term_months: 12,
        }
    }
}

/// Where one application stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    NotStarted,
    /// The loan was requested: waiting for origination (the bank's approval workflow).
    Requested,
    /// Originated: waiting for the disbursement.
    Originated,
    /// The disbursement failed: waiting for the cancellation.
    Compensating,
    Completed,
    Failed,
}

/// One application, as folded from its workflow stream.
struct Application {
    id: WorkflowId,
    customer_id: Option<CustomerId>,
    stage: Stage,
    version: u64,
}

impl Application {
    fn loan_id(&self) -> LoanId {
        LoanId::derived(self.id.as_str())
    }

    fn command_id(&self, step: &str) -> CommandId {
        CommandId::derived(&format!("{}/{step}", self.id))
    }
}

/// Offers loans to verified customers; see the module documentation.
pub struct LoanApplicationSaga {
    parts: Parts,
    offer: LoanOffer,
}

impl LoanApplicationSaga {
    /// The saga over `bank`, offering `offer`: it sends its commands on `bus`, at the time of
    /// `clock`. It does nothing until started.
    pub fn new(bank: Arc<Bank>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>, offer: LoanOffer) -> Arc<Self> {
        Arc::new(Self { parts: Parts { bank, bus, clock }, offer })
    }

    /// The saga of `customer`: one per customer.
    pub fn id_for(customer: &CustomerId) -> WorkflowId {
        WorkflowId::derived(&format!("{WORKFLOW_TYPE}/{customer}"))
    }

    /// The triggers, and the outcomes of the commands it sends.
    pub fn topics() -> Vec<eventbus::TopicName> {
        [
            Topic::CustomersCreated,
            Topic::CustomersKycChanged,
            Topic::LoansOriginated,
            Topic::LoansDisbursed,
            Topic::LoansCancelled,
            Topic::WorkflowsRejected,
            Topic::TransactionsFailed,
            Topic::CommandsRejected,
        ]
        .iter()
        .map(|topic| topic.name())
        .collect()
    }

    /// Subscribes to its [`topics`](Self::topics).
    pub async fn start(self: &Arc<Self>) -> Result<(), eventbus::BusError> {
        let mut topics = Self::topics().into_iter();
        let first = topics.next().expect("the saga reads some topics");
        let subscription =
            topics.fold(Subscription::new(first, GroupId::new(GROUP)?), Subscription::and_topic).sequenced();
        let saga = Arc::clone(self);
        let handler = typed_handler(move |event: NexumEvent, message: Message| {
            let saga = Arc::clone(&saga);
            async move { saga.handle(&event, &message.event).await }
        });
        self.parts.bus.subscribe(subscription, handler).await
    }

    /// Reacts to one event; `schema` is its envelope, for its ids.
    pub async fn handle(&self, event: &NexumEvent, schema: &eventbus::EventSchema) -> Result<(), HandlerError> {
        let verified = match &event.payload {
            Payload::CustomerCreated(details) => details.kyc_status == KycStatus::Verified,
            Payload::KycStatusChanged(change) => {
                change.new_status == KycStatus::Verified && change.old_status != KycStatus::Verified
            }
            _ => false,
        };
        let id = if verified {
            let customer: CustomerId = event.entity_id.parse().map_err(HandlerError::permanent)?;
            Self::id_for(&customer)
        } else {
            match correlation(schema).and_then(|c| c.parse::<WorkflowId>().ok()) {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        let application = self.load(&id).await?;
        if application.stage == Stage::NotStarted && !verified {
            return Ok(()); // Correlated with something else.
        }
        let application = match self.decide(&application, event, schema, verified) {
            Some(step) => {
                let ctx = Ctx::at(self.parts.clock.now())
                    .correlated(id.as_str())
                    .caused_by(schema.event_id.as_ref().map(ToString::to_string).unwrap_or_default())
                    .by_user(ACTOR);
                if !self.parts.bank.record_workflow_step(&ctx, &id, application.version, step).await.map_err(bank)? {
                    return Err(HandlerError::msg(format!("workflow {id} changed concurrently; deciding again")));
                }
                self.load(&id).await?
            }
            None => application,
        };
        self.send_pending(&application).await
    }

    /// The step `event` moves the application to, if any.
    fn decide(
        &self,
        application: &Application,
        event: &NexumEvent,
        schema: &eventbus::EventSchema,
        verified: bool,
    ) -> Option<Payload> {
        let caused_by = |step: &str| causation(schema) == Some(application.command_id(step).as_str());
        let customer = application.customer_id.as_ref().map(ToString::to_string).unwrap_or_default();
        let step = |step: &str, detail: String| {
            Payload::WorkflowStepCompleted(WorkflowStepCompleted {
                workflow_type: WORKFLOW_TYPE.into(),
                subject_id: customer.clone(),
                step: step.into(),
                detail,
            })
        };
        let failed = |step: &str, reason: String| {
            Payload::WorkflowRejected(WorkflowRejected {
                workflow_type: WORKFLOW_TYPE.into(),
                subject_id: customer.clone(),
                step: step.into(),
                reason,
            })
        };
        let ours = event.entity_id == application.loan_id().as_str();
        match (application.stage, &event.payload) {
            (Stage::NotStarted, _) if verified => {
                let offer = &self.offer;
                Some(Payload::WorkflowStepCompleted(WorkflowStepCompleted {
                    workflow_type: WORKFLOW_TYPE.into(),
                    subject_id: event.entity_id.clone(),
                    step: "pre_approval_requested".into(),
                    detail: format!(
                        "loan {} of {} {} at {}% for {} months",
                        application.loan_id(),
                        offer.principal,
                        offer.currency,
                        offer.interest_rate,
                        offer.term_months
                    ),
                }))
            }
            (Stage::Requested, Payload::LoanOriginated(_)) if ours => {
                Some(step("loan_originated", format!("loan {}", application.loan_id())))
            }
            (Stage::Requested, Payload::WorkflowRejected(rejected)) if rejected.workflow_type != WORKFLOW_TYPE => {
                Some(failed("pre_approval", format!("{}: {}", rejected.step, rejected.reason)))
            }
            (Stage::Requested, Payload::CommandRejected(rejected)) if caused_by("originate") => {
                Some(failed("pre_approval", rejected.reason.clone()))
            }
            (Stage::Originated, Payload::LoanDisbursed(disbursed)) if ours => {
                Some(Payload::WorkflowCompleted(WorkflowCompleted {
                    workflow_type: WORKFLOW_TYPE.into(),
                    subject_id: customer.clone(),
                    steps: vec![
                        "pre_approval_requested".into(),
                        "loan_originated".into(),
                        format!("loan_disbursed to {}", disbursed.account_id),
                    ],
                }))
            }
            (Stage::Originated, Payload::TransactionFailed(failure)) if caused_by("disburse") => {
                Some(step("compensation_requested", failure.error_message.clone()))
            }
            (Stage::Originated, Payload::CommandRejected(rejected)) if caused_by("disburse") => {
                Some(step("compensation_requested", rejected.reason.clone()))
            }
            (Stage::Compensating, Payload::LoanCancelled(cancelled)) if ours => {
                Some(failed("disbursement", format!("loan cancelled: {}", cancelled.reason)))
            }
            (Stage::Compensating, Payload::CommandRejected(rejected)) if caused_by("cancel") => {
                tracing::error!(workflow = %application.id, reason = %rejected.reason, "Compensation refused: the loan needs a person");
                Some(failed("compensation", rejected.reason.clone()))
            }
            _ => None,
        }
    }

    /// Sends the command the application waits on, again if need be: its id makes a repeat
    /// harmless, and a crash between recording a step and sending its command is healed by the
    /// redelivered event.
    async fn send_pending(&self, application: &Application) -> Result<(), HandlerError> {
        let Some(customer) = &application.customer_id else { return Ok(()) };
        let loan_id = application.loan_id();
        let (step, data) = match application.stage {
            Stage::Requested => (
                "originate",
                json!({
                    "action": "originate",
                    "loan_id": loan_id,
                    "customer_id": customer,
                    "principal": self.offer.principal.to_string(),
                    "currency": self.offer.currency.code(),
                    "interest_rate": self.offer.interest_rate.to_string(),
                    "term_months": self.offer.term_months,
                }),
            ),
            Stage::Originated => ("disburse", json!({"action": "disburse", "loan_id": loan_id})),
            Stage::Compensating => (
                "cancel",
                json!({"action": "cancel", "loan_id": loan_id, "reason": "the pre-approved loan could not be paid out"}),
            ),
            Stage::NotStarted | Stage::Completed | Stage::Failed => return Ok(()),
        };
        let command = Outgoing {
            topic: Topic::CommandsLoans,
            id: application.command_id(step),
            entity_id: loan_id.to_string(),
            correlation_id: application.id.to_string(),
            data,
        };
        command.send(&*self.parts.bus, ACTOR, self.parts.clock.now()).await?;
        Ok(())
    }

    async fn load(&self, id: &WorkflowId) -> Result<Application, HandlerError> {
        let (events, version) = self.parts.bank.workflow_history(id).await.map_err(bank)?;
        let mut application = Application { id: id.clone(), customer_id: None, stage: Stage::NotStarted, version };
        for event in &events {
            let (workflow_type, subject, stage) = match &event.payload {
                Payload::WorkflowStepCompleted(step) => {
                    let stage = match step.step.as_str() {
                        "pre_approval_requested" => Stage::Requested,
                        "loan_originated" => Stage::Originated,
                        "compensation_requested" => Stage::Compensating,
                        _ => application.stage,
                    };
                    (&step.workflow_type, &step.subject_id, stage)
                }
                Payload::WorkflowCompleted(done) => (&done.workflow_type, &done.subject_id, Stage::Completed),
                Payload::WorkflowRejected(failed) => (&failed.workflow_type, &failed.subject_id, Stage::Failed),
                _ => continue,
            };
            if workflow_type != WORKFLOW_TYPE {
                // Another kind of workflow that happens to share the correlation id.
                return Ok(Application { stage: Stage::NotStarted, ..application });
            }
            application.customer_id = subject.parse().ok().or(application.customer_id);
            application.stage = stage;
        }
        Ok(application)
    }
}

/// A transient bank error is retried by the bus; any other is a defect to dead-letter.
fn bank(error: BankError) -> HandlerError {
    if error.is_transient() { HandlerError::from(error) } else { HandlerError::permanent(error) }
}
