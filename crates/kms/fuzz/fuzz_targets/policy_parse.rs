//! Fuzz the ACL policy parser and evaluator: any text either parses or gives an error, and a
//! parsed policy answers capability queries for paths taken from the input without panicking.
//!
//! Run: `cd crates/kms/fuzz && cargo +nightly fuzz run policy_parse -- -jobs=1 -max_total_time=600`
#![no_main]

use libfuzzer_sys::fuzz_target;
use strongroom_kms::policy::{parse, Acl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse("fuzz", text) {
        Ok(p) => {
            assert_eq!(p.raw, text, "policy text is kept verbatim");
            let acl = Acl::new([&p], false);
            for r in &p.rules {
                let _ = acl.capabilities(&r.pattern);
                let _ = acl.capabilities(r.pattern.trim_end_matches('*'));
                let _ = acl.any_under(&r.pattern);
            }
            for line in text.lines().take(8) {
                let caps = acl.capabilities(line.trim());
                assert!(!caps.contains(strongroom_kms::policy::Caps::DENY), "deny never leaks out as a grant");
            }
        }
        Err(e) => assert!(e.to_string().starts_with("failed to parse policy")),
    }
});
