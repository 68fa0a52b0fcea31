//! Serving a guest's ring in the caller's thread (the embedded mode).
//!
//! With both ends in one thread nobody can wait for the peer: a request larger than the free
//! space only gets through if the server consumes part of it, then the guest produces more, and
//! so on (likewise for a long reply). [`pump`] does exactly that interleaving: it repeats
//! "guest flushes `req`; server takes whole requests and hands them to the handler, whose
//! replies are queued on the server end; server flushes `rsp`; guest takes whole messages"
//! until a round moves no byte and completes nothing. Every step is non-blocking, so it always
//! terminates (as long as the handler does not produce output forever) and never needs a second
//! thread or a notification.
//!
//! Typical use: the guest handle and its server end live together under one lock; a call
//! queues the request with [`ClientRing::write_message`], pumps, and
//! picks its reply out of the received messages (the rest are watch events).

use super::{ClientRing, Message, RingError, ServerRing};

/// What the server does with each request: typically feed it to the store and write the
/// store's output with [`ServerRing::write_encoded`].
pub trait Handler {
    /// Serves one request; replies and events go to `server` (queued if they do not fit yet).
    fn request(&mut self, req: Message, server: &mut ServerRing) -> Result<(), RingError>;

    /// The guest reset the ring: drop its watches, transactions and in-flight requests.
    fn reconnected(&mut self) {}
}

impl<F> Handler for F
where
    F: FnMut(Message, &mut ServerRing) -> Result<(), RingError>,
{
    fn request(&mut self, req: Message, server: &mut ServerRing) -> Result<(), RingError> {
        self(req, server)
    }
}

/// Moves bytes both ways between `client` and `server` (ends of the same page) until nothing
/// moves, serving every complete request with `handler` and appending every message the guest
/// receives to `received`, in order.
pub fn pump<H: Handler + ?Sized>(
    client: &mut ClientRing,
    server: &mut ServerRing,
    handler: &mut H,
    received: &mut Vec<Message>,
) -> Result<(), RingError> {
    loop {
        let before = client.bytes_moved() + server.bytes_moved();
        let mut completed = false;
        client.flush()?;
        if server.check_reconnect() {
            handler.reconnected();
            completed = true;
        }
        while let Some(req) = server.try_read_message()? {
            handler.request(req, server)?;
            completed = true;
        }
        server.flush()?;
        while let Some(m) = client.try_read_message()? {
            received.push(m);
            completed = true;
        }
        if !completed && client.bytes_moved() + server.bytes_moved() == before {
            return Ok(());
        }
    }
}
