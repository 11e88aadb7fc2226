//! Memory for request bodies. Reading and decoding a body takes memory the client chooses —
//! up to `max_request_size` (32 MiB by default), before any token is checked — and decoding
//! JSON multiplies it: each value of `[0,0,0,…]` (two bytes) becomes a tree node of about a
//! hundred. Small requests, body and decoded form under [`SMALL_REQUEST`], go ahead at once
//! (the connection cap bounds their total). Larger ones first reserve what they will take
//! from a process-wide budget of [`REQUEST_MEMORY`], waiting up to [`BUDGET_WAIT`] for
//! others to finish and refused with 429 after that; one that could never fit gets 413.

use crate::request::ApiError;
use serde_json::Value;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests needing no more than this go ahead without a reservation.
pub const SMALL_REQUEST: usize = 64 << 10;
/// What all larger requests being read or decoded at once may take together.
pub const REQUEST_MEMORY: usize = 256 << 20;
/// The longest a request waits for its share.
pub const BUDGET_WAIT: Duration = Duration::from_secs(5);
/// Upper bound of the memory one decoded JSON value takes, beyond its text: a node, a map
/// entry around it, and the doubling slack of the vector or map holding it.
const VALUE_COST: usize = 2
    * (std::mem::size_of::<Value>()
        + std::mem::size_of::<String>()
        + 2 * std::mem::size_of::<usize>());

/// The budget is counted in KiB (the semaphore's permits are counted in `u32`).
const UNIT: usize = 1 << 10;

static BUDGET: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(REQUEST_MEMORY / UNIT)));

/// Memory reserved for one request; returned when dropped. A refusal (429) names the
/// request's `path`, as OpenBao's rate limit answer does: the methods that may refuse take it
/// (a request that reserves nothing copies nothing).
pub struct Reservation<'b> {
    /// Borrowed: the shared count is touched only by a request that reserves.
    budget: &'b Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Default for Reservation<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl Reservation<'static> {
    pub fn new() -> Self {
        Self::with_budget(&BUDGET)
    }
}

impl<'b> Reservation<'b> {
    fn with_budget(budget: &'b Arc<Semaphore>) -> Self {
        Self { budget, held: None }
    }

    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Reserve for a body buffer of `cap` bytes: the buffer, and as much again plus
    /// [`SMALL_REQUEST`] for its decoded form (strings are copied out of it), so that
    /// decoding an ordinary body needs nothing more. Nothing for a small body.
    pub async fn body(&mut self, cap: usize, path: &str) -> Result<(), ApiError> {
        if self.held.is_none() && cap <= SMALL_REQUEST / 2 {
            return Ok(());
        }
        self.cover(2 * cap + SMALL_REQUEST, path).await
    }

    /// Make sure `total` bytes are reserved for the body and its decoding ([`decode_cost`]).
    /// Nothing for a small request.
    pub async fn decoding(&mut self, total: usize, path: &str) -> Result<(), ApiError> {
        if self.held.is_none() && total <= SMALL_REQUEST {
            return Ok(());
        }
        self.cover(total, path).await
    }

    /// Reserve `bytes` in all. A request holding nothing waits up to [`BUDGET_WAIT`]; one
    /// already holding a share takes more only if it is free at once, so that requests
    /// never hold memory while waiting for each other's.
    async fn cover(&mut self, bytes: usize, path: &str) -> Result<(), ApiError> {
        if bytes <= self.held_bytes() {
            return Ok(());
        }
        if bytes > REQUEST_MEMORY {
            return Err(ApiError::new(
                413,
                format!(
                    "http: request body too large: reading and decoding it would take {} MiB, \
                     more than the {} MiB this server sets aside for requests",
                    bytes >> 20,
                    REQUEST_MEMORY >> 20
                ),
            ));
        }
        let more = (bytes.div_ceil(UNIT) - self.held_bytes() / UNIT) as u32;
        let got = match self.held {
            None => tokio::time::timeout(BUDGET_WAIT, self.budget.clone().acquire_many_owned(more))
                .await
                .ok()
                .and_then(Result::ok),
            Some(_) => self.budget.clone().try_acquire_many_owned(more).ok(),
        };
        let got = got.ok_or_else(|| {
            ApiError::new(
                429,
                format!("request path {path:?}: rate limit quota exceeded"),
            )
        })?;
        match &mut self.held {
            Some(p) => p.merge(got),
            None => self.held = Some(got),
        }
        Ok(())
    }
}

/// An upper bound of the memory decoding `body` takes beyond the body itself: its text again
/// (strings are copied out), and [`VALUE_COST`] per value. JSON values are counted from the
/// structural characters outside strings (a value is the document, or follows `[`, `{`, `,`
/// or `:`); a form body (`form`: as [`super::body::is_form`] says the body is decoded) has a
/// key and a value per `&`-separated pair.
pub fn decode_cost(body: &[u8], form: bool) -> usize {
    let values = if form {
        2 * (1 + body.iter().filter(|&&b| b == b'&').count())
    } else {
        1 + json_separators(body)
    };
    body.len() + values * VALUE_COST
}

/// The JSON structural bytes (`[ { , :`) outside strings: an upper bound on the values
/// decoding makes. Strings are skipped with `memchr` (this runs on every request body: a
/// byte-by-byte state machine cost ~13 % of a 4 KiB transit encrypt).
fn json_separators(body: &[u8]) -> usize {
    let structural = |s: &[u8]| {
        s.iter()
            .filter(|&&b| matches!(b, b'[' | b'{' | b',' | b':'))
            .count()
    };
    let (mut n, mut i) = (0, 0);
    while i < body.len() {
        let Some(q) = memchr::memchr(b'"', &body[i..]) else {
            return n + structural(&body[i..]);
        };
        n += structural(&body[i..i + q]);
        i = skip_string(body, i + q + 1);
    }
    n
}

/// The index just past the string whose text starts at `i` (its closing quote; a
/// backslash escapes the next byte); `body.len()` when it is not closed.
fn skip_string(body: &[u8], mut i: usize) -> usize {
    while i < body.len() {
        match memchr::memchr2(b'"', b'\\', &body[i..]) {
            Some(k) if body[i + k] == b'\\' => i += k + 2,
            Some(k) => return i + k + 1,
            None => break,
        }
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte definition [`json_separators`] must agree with.
    fn separators_by_bytes(body: &[u8]) -> usize {
        let (mut n, mut in_string, mut escaped) = (0, false, false);
        for &b in body {
            match (in_string, b) {
                (true, _) if escaped => escaped = false,
                (true, b'\\') => escaped = true,
                (true, b'"') => in_string = false,
                (true, _) => {}
                (false, b'"') => in_string = true,
                (false, b'[' | b'{' | b',' | b':') => n += 1,
                (false, _) => {}
            }
        }
        n
    }

    #[test]
    fn separators_agree_with_the_byte_by_byte_definition_on_generated_bodies() {
        let alphabet = br#"[]{},:"\ a0"#;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000 {
            let body: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            assert_eq!(
                json_separators(&body),
                separators_by_bytes(&body),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn decode_cost_bounds_what_decoding_takes() {
        // Values counted: [0,0,0] is 4 values; strings hide their separators.
        assert_eq!(json_separators(b"[0,0,0]"), 3);
        assert_eq!(json_separators(br#"{"a,b:[{":"x\"]:,"}"#), 2);
        assert_eq!(decode_cost(b"a=1&b=2", true), 7 + 4 * VALUE_COST);
        // A 1 MiB array of zeros costs far more than 1 MiB to decode, and is charged so.
        let zeros = format!("[{}0]", "0,".repeat(512 << 10));
        assert!(decode_cost(zeros.as_bytes(), false) > 100 << 20);
        // One large string costs little beyond its text.
        let big = format!("{{\"plaintext\":\"{}\"}}", "A".repeat(1 << 20));
        assert!(decode_cost(big.as_bytes(), false) < (2 << 20) + 4096);
    }

    #[tokio::test]
    async fn large_requests_share_the_budget_and_wait_or_are_refused() {
        let budget = Arc::new(Semaphore::new(REQUEST_MEMORY / UNIT));
        let free = || budget.available_permits() * UNIT;
        let mut small = Reservation::with_budget(&budget);
        small.body(SMALL_REQUEST / 2, "p").await.unwrap();
        small.decoding(SMALL_REQUEST, "p").await.unwrap();
        assert_eq!(free(), REQUEST_MEMORY);

        // A body of a quarter of the budget takes half of it (the body and its decoded
        // copy); decoding within that needs nothing more.
        let quarter = REQUEST_MEMORY / 4;
        let mut big = Reservation::with_budget(&budget);
        big.body(quarter, "p").await.unwrap();
        big.decoding(2 * quarter, "p").await.unwrap();
        assert_eq!(free(), REQUEST_MEMORY / 2 - SMALL_REQUEST);

        // Someone holding nothing waits, then is refused with OpenBao's rate-limit answer.
        let mut late = Reservation::with_budget(&budget);
        let t0 = std::time::Instant::now();
        let err = late
            .body(quarter + SMALL_REQUEST, "sys/x")
            .await
            .unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(
            err.errors,
            vec![r#"request path "sys/x": rate limit quota exceeded"#]
        );
        assert!(t0.elapsed() >= BUDGET_WAIT);

        // Someone holding a share does not wait for more: refused at once when short.
        let mut other = Reservation::with_budget(&budget);
        other.body(REQUEST_MEMORY / 8, "p").await.unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(
            big.decoding(REQUEST_MEMORY, "p").await.unwrap_err().status,
            429
        );
        assert!(t0.elapsed() < BUDGET_WAIT);
        // More than the whole budget can never fit: 413.
        assert_eq!(
            big.decoding(REQUEST_MEMORY + 1, "p")
                .await
                .unwrap_err()
                .status,
            413
        );
        drop((big, other));
        assert_eq!(free(), REQUEST_MEMORY);
        late.body(quarter, "sys/x").await.unwrap();
        // Value-heavy JSON in a small body still pays for its decoding.
        let mut dense = Reservation::with_budget(&budget);
        dense.body(SMALL_REQUEST / 4, "p").await.unwrap();
        dense.decoding(4 * SMALL_REQUEST, "p").await.unwrap();
        assert_eq!(
            free(),
            REQUEST_MEMORY / 2 - SMALL_REQUEST - 4 * SMALL_REQUEST
        );
    }
}
