//! User lockout, as OpenBao's default for password logins: after 5 failed logins of an
//! existing user within 15 minutes, that user's logins are refused (403, without checking
//! the password, so a locked account costs no hashing) until 15 minutes after the last
//! failure or an operator unlocks it (`sys/locked-users/<accessor>/unlock/<user>`). Only
//! existing users are tracked, so the table is bounded by the user count. Kept in memory:
//! a restart forgets lockouts.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const THRESHOLD: u32 = 5;
const DURATION: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
pub struct Lockout {
    users: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    /// Whether `user` may not log in now.
    pub fn is_locked(&self, user: &str) -> bool {
        let mut users = self.users.lock();
        match users.get(user) {
            Some(f) if f.last.elapsed() >= DURATION => {
                users.remove(user);
                false
            }
            Some(f) => f.count >= THRESHOLD,
            None => false,
        }
    }

    /// A wrong password for an existing user.
    pub fn failed(&self, user: &str) {
        let mut users = self.users.lock();
        let now = Instant::now();
        let f = users.entry(user.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if f.last.elapsed() >= DURATION {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    /// A successful login, or an operator's unlock.
    pub fn clear(&self, user: &str) {
        self.users.lock().remove(user);
    }

    /// Users locked out now, sorted.
    pub fn locked(&self) -> Vec<String> {
        let users = self.users.lock();
        let mut out: Vec<String> = users
            .iter()
            .filter(|(_, f)| f.count >= THRESHOLD && f.last.elapsed() < DURATION)
            .map(|(u, _)| u.clone())
            .collect();
        out.sort();
        out
    }

    /// Forget a user (deleted).
    pub fn forget(&self, user: &str) {
        self.clear(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_one_user_until_cleared() {
        let l = Lockout::default();
        for _ in 0..4 {
            l.failed("bob");
        }
        assert!(!l.is_locked("bob"));
        l.failed("bob");
        assert!(l.is_locked("bob"));
        assert!(!l.is_locked("alice"));
        assert_eq!(l.locked(), vec!["bob"]);
        l.clear("bob");
        assert!(!l.is_locked("bob") && l.locked().is_empty());
    }
}
