//! Consuming Nexum events from the bus: a handler that receives typed events.

use std::future::Future;
use std::sync::Arc;

use eventbus::{Handler, HandlerError, Message, handler_fn};

use crate::events::NexumEvent;

/// A bus handler that decodes each message into a [`NexumEvent`] (checking its type and major
/// version, and upcasting older versions) before calling `handle`. An event it cannot decode,
/// such as one of an unknown major version, goes to the dead-letter topic at once with the
/// reason; retrying would not help.
pub fn typed_handler<F, Fut>(handle: F) -> Arc<dyn Handler>
where
    F: Fn(NexumEvent, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let handle = Arc::new(handle);
    handler_fn(move |message: Message| {
        let handle = Arc::clone(&handle);
        async move {
            let event = NexumEvent::from_schema(&message.event).map_err(HandlerError::permanent)?;
            handle(event, message).await
        }
    })
}
