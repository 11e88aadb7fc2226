//! Go-style flag normalisation: the Vault/OpenBao CLI (and every script written for it) uses
//! single-dash long flags such as `-dev`, `-key-shares=5` or `-format json`. clap only knows
//! `--long`, so a single-dash argument with more than one character before any `=` becomes
//! its double-dash form. Everything after a bare `--` is left alone, as are `k=v` arguments,
//! `-` (stdin) and short flags like `-h`.

use std::ffi::OsString;

pub fn normalize<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for a in args {
        if passthrough {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        let name = s.split('=').next().unwrap_or(s);
        if name.len() > 2 && name.starts_with('-') && !name.starts_with("--") {
            let second = name.as_bytes()[1];
            if second.is_ascii_alphabetic() {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[&str]) -> Vec<String> {
        normalize(v.iter().map(OsString::from))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(
            n(&[
                "sr",
                "operator",
                "init",
                "-key-shares=5",
                "-format",
                "json",
                "-h",
                "-",
                "k=-v"
            ]),
            vec![
                "sr",
                "operator",
                "init",
                "--key-shares=5",
                "--format",
                "json",
                "-h",
                "-",
                "k=-v"
            ]
        );
    }

    #[test]
    fn after_double_dash_nothing_changes() {
        assert_eq!(n(&["sr", "--", "-dev"]), vec!["sr", "--", "-dev"]);
        assert_eq!(n(&["sr", "--dev", "-5"]), vec!["sr", "--dev", "-5"]);
    }
}
