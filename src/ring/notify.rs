//! Signalling between the two ends. A real guest and xenstored use an event channel; here the
//! transport supplies a [`Notify`] hook, called after every publication.

/// Tells the peer that the page changed. Called after an index, `connection` or `error` was
/// published, never while this crate holds a lock. It must not block for long and must not call
/// back into the same ring end.
pub trait Notify: Send {
    fn notify(&self);
}

impl<F: Fn() + Send> Notify for F {
    fn notify(&self) {
        self()
    }
}

impl Notify for Box<dyn Notify> {
    fn notify(&self) {
        (**self).notify()
    }
}
