//! Request-scoped durability tickets: answer only once what the answer depends on is on disk,
//! without parking a thread per request while the disk works.
//!
//! A store with deferred durability (the redb store) applies a commit to an in-memory overlay
//! at once — later reads see it — and hands the batch to its committer thread, which makes
//! many requests' batches durable with one fsync. Inside a [`scope`] a commit does not wait:
//! it records its sequence number (and so does a read that sees a not-yet-durable value) in
//! the scope's ticket. The HTTP layer runs a request's pipeline in a scope and then awaits
//! [`super::Storage::wait_durable`] for the ticket before sending the response. So no client
//! ever sees a result, its own or another request's, that a crash could take back (the
//! "controlled lock violation" of database literature); a failed fsync fails every request
//! that depends on it, and the store refuses writes from then on.
//!
//! Outside a scope (the blocking pool, tests, tools) a commit waits for its own durability
//! before returning, as the [`super::Storage::commit`] contract says.

use std::cell::Cell;

thread_local! {
    static DEFER: Cell<bool> = const { Cell::new(false) };
    static TICKET: Cell<u64> = const { Cell::new(0) };
}

/// Run `f` with deferred durability on this thread; returns its result and the ticket to
/// await (0: nothing to wait for). Scopes do not nest (an inner scope ends the outer one).
pub fn scope<R>(f: impl FnOnce() -> R) -> (R, u64) {
    DEFER.with(|d| d.set(true));
    TICKET.with(|t| t.set(0));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFER.with(|d| d.set(false));
        }
    }
    let r = {
        let _reset = Reset;
        f()
    };
    (r, TICKET.with(|t| t.replace(0)))
}

/// Whether the current thread is inside a [`scope`].
pub(crate) fn deferring() -> bool {
    DEFER.with(|d| d.get())
}

/// Record that the current request depends on sequence number `seq` being durable.
pub(crate) fn depend_on(seq: u64) {
    if deferring() {
        TICKET.with(|t| t.set(t.get().max(seq)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_the_maximum_and_scoped() {
        depend_on(5); // outside a scope: ignored
        let (v, t) = scope(|| {
            assert!(deferring());
            depend_on(3);
            depend_on(9);
            depend_on(4);
            7
        });
        assert_eq!((v, t), (7, 9));
        assert!(!deferring());
        let ((), t) = scope(|| {});
        assert_eq!(t, 0);
    }

    #[test]
    fn a_panicking_scope_does_not_leave_deferral_on() {
        let r = std::panic::catch_unwind(|| scope(|| panic!("boom")));
        assert!(r.is_err());
        assert!(!deferring());
    }
}
