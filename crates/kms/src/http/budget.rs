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

/// Memory reserved for one request; returned when dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    /// A 429 names the request's path, as OpenBao's rate limit answer does.
    path: String,
}

impl Reservation {
    pub fn new(path: &str) -> Self {
        Self::with_budget(BUDGET.clone(), path)
    }

    fn with_budget(budget: Arc<Semaphore>, path: &str) -> Self {
        Self {
            budget,
            held: None,
            path: path.to_string(),
        }
    }

    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Make sure `bytes` are reserved in all (nothing for a small request).
    pub async fn cover(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes <= SMALL_REQUEST || bytes <= self.held_bytes() {
            return Ok(());
        }
        let total = REQUEST_MEMORY / UNIT;
        let want = bytes.div_ceil(UNIT);
        if want > total {
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
        let more = (want - self.held_bytes() / UNIT) as u32;
        let got = tokio::time::timeout(BUDGET_WAIT, self.budget.clone().acquire_many_owned(more))
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::new(
                    429,
                    format!("request path {:?}: rate limit quota exceeded", self.path),
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
/// or `:`); a form body has a key and a value per `&`-separated pair. Which of the two the
/// body is decoded as does not matter: the larger count is charged.
pub fn decode_cost(body: &[u8]) -> usize {
    let json = 1 + json_separators(body);
    let form = 2 * (1 + body.iter().filter(|&&b| b == b'&').count());
    body.len() + json.max(form) * VALUE_COST
}

fn json_separators(body: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (0, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' | b':' => n += 1,
                _ => {}
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_cost_bounds_what_decoding_takes() {
        // Values counted: [0,0,0] is 4 values; strings hide their separators.
        assert_eq!(json_separators(b"[0,0,0]"), 3);
        assert_eq!(json_separators(br#"{"a,b:[{":"x\"]:,"}"#), 2);
        assert_eq!(decode_cost(b"a=1&b=2"), 7 + 4 * VALUE_COST);
        // A 1 MiB array of zeros costs far more than 1 MiB to decode, and is charged so.
        let zeros = format!("[{}0]", "0,".repeat(512 << 10));
        assert!(decode_cost(zeros.as_bytes()) > 100 << 20);
        // One large string costs little beyond its text.
        let big = format!("{{\"plaintext\":\"{}\"}}", "A".repeat(1 << 20));
        assert!(decode_cost(big.as_bytes()) < (2 << 20) + 4096);
    }

    #[tokio::test]
    async fn large_requests_share_the_budget_and_wait_or_are_refused() {
        let budget = Arc::new(Semaphore::new(REQUEST_MEMORY / UNIT));
        let mut small = Reservation::with_budget(budget.clone(), "p");
        small.cover(SMALL_REQUEST).await.unwrap();
        assert_eq!(budget.available_permits(), REQUEST_MEMORY / UNIT);

        let mut big = Reservation::with_budget(budget.clone(), "p");
        big.cover(REQUEST_MEMORY / 2).await.unwrap();
        big.cover(REQUEST_MEMORY * 3 / 4).await.unwrap(); // grows by the difference
        assert_eq!(budget.available_permits(), REQUEST_MEMORY / 4 / UNIT);

        let mut late = Reservation::with_budget(budget.clone(), "sys/x");
        let t0 = std::time::Instant::now();
        let err = late.cover(REQUEST_MEMORY / 2).await.unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(
            err.errors,
            vec![r#"request path "sys/x": rate limit quota exceeded"#]
        );
        assert!(t0.elapsed() >= BUDGET_WAIT);

        assert_eq!(big.cover(REQUEST_MEMORY + 1).await.unwrap_err().status, 413);
        drop(big);
        assert_eq!(budget.available_permits(), REQUEST_MEMORY / UNIT);
        late.cover(REQUEST_MEMORY / 2).await.unwrap();
    }
}
