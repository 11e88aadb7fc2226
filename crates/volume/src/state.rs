//! The explicit, persisted state machine of a volume.
//!
//! ```text
//!  Provisioning ──protect secret──▶ KeyProtected ──format LUKS2──▶ Formatted ──shred──▶ Shredding ──▶ Shredded
//!                                                    (filesystem made once, recorded in metadata)
//! ```
//! A LUKS2 format happens only in `Provisioning`/`KeyProtected`, i.e. before the volume was ever
//! handed out; a content probe (zeros, no signature) never decides anything. Long operations on a
//! formatted volume record a [`Pending`] step first so that a crash at any point is resumed (or
//! rolled forward) by re-running the operation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Metadata written, the backing store may exist; no key material protected yet.
    Provisioning,
    /// The keyslot secret is protected by the KMS (wrapped blob in metadata, or KV entry).
    KeyProtected,
    /// LUKS2 header written and verified: the volume holds (or may hold) data.
    Formatted,
    /// Shred started: the volume is never opened again; the shred is re-run until done.
    Shredding,
    /// Key material destroyed, keyslots wiped. A tombstone.
    Shredded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Provisioning => "provisioning",
            State::KeyProtected => "key_protected",
            State::Formatted => "formatted",
            State::Shredding => "shredding",
            State::Shredded => "shredded",
        }
    }

    /// Whether moving to `next` is a legal transition.
    pub fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Provisioning, KeyProtected)
                | (KeyProtected, Formatted)
                | (
                    Provisioning | KeyProtected | Formatted | Shredding,
                    Shredding
                )
                | (Shredding, Shredded)
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An operation in progress on a formatted volume, persisted before its first effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Pending {
    /// Grow the backing store to `new_size` bytes of data.
    Resize { new_size: u64 },
    /// Keyslot-secret rotation: the new secret is protected (envelope: `new_wrapped`; kv: in the
    /// entry's `next` field); a keyslot for it gets added and verified, then it is promoted.
    RotateSlot {
        new_wrapped: Option<String>,
        new_key_version: u64,
    },
    /// The new secret is promoted; every keyslot except `keep` is being removed.
    DropOldSlots { keep: u32 },
}

#[cfg(test)]
mod tests {
    use super::State::*;

    #[test]
    fn transitions() {
        assert!(Provisioning.can_become(KeyProtected));
        assert!(KeyProtected.can_become(Formatted));
        assert!(Formatted.can_become(Shredding));
        assert!(Shredding.can_become(Shredded));
        // Never back to a state that formats, never out of a shred.
        for s in [Formatted, Shredding, Shredded] {
            assert!(!s.can_become(Provisioning) && !s.can_become(KeyProtected));
        }
        assert!(!Shredded.can_become(Formatted) && !Shredding.can_become(Formatted));
        assert!(
            !Provisioning.can_become(Formatted),
            "no format without a protected key"
        );
    }
}
