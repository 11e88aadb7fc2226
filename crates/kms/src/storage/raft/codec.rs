//! The binary encoding of the hot path: log entries (in the log and on the wire) and the
//! append-entries exchange. JSON with base64 values cost more CPU than the rest of a
//! replicated write; this is a flat little-endian layout with length-prefixed byte strings.
//!
//! Every encoding starts with [`MAGIC`], a byte JSON never starts with, so readers accept
//! the JSON that earlier versions wrote (log files) or sent (peers) as well. Decoding checks
//! every length against what is left: bad input is an error, never a panic.

use super::types::{Command, Entry, LogId, NodeId, Op, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{CommittedLeaderId, EntryPayload, LeaderId};

/// First byte of every binary encoding (JSON starts with `{`, `[`, `"` or a letter).
pub const MAGIC: u8 = 0xB1;

const BLANK: u8 = 0;
const NORMAL: u8 = 1;
const MEMBERSHIP: u8 = 2;
const PUT: u8 = 0;
const DELETE: u8 = 1;

#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable raft record: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad(what: &str) -> DecodeError {
    DecodeError(what.to_string())
}

/// Whether `bytes` is in this encoding (else it is JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC)
}

// ---- writing ----

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // values are far below 4 GiB: a frame is refused above 64 MiB
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_log_id(out: &mut Vec<u8>, l: &LogId) {
    put_u64(out, l.leader_id.term);
    put_u64(out, l.leader_id.node_id);
    put_u64(out, l.index);
}

fn put_opt_log_id(out: &mut Vec<u8>, l: &Option<LogId>) {
    match l {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            put_log_id(out, l);
        }
    }
}

fn put_vote(out: &mut Vec<u8>, v: &Vote) {
    put_u64(out, v.leader_id.term);
    put_u64(out, v.leader_id.node_id);
    out.push(u8::from(v.committed));
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) -> Result<(), DecodeError> {
    put_log_id(out, &e.log_id);
    match &e.payload {
        EntryPayload::Blank => out.push(BLANK),
        EntryPayload::Normal(cmd) => {
            out.push(NORMAL);
            out.extend_from_slice(&(cmd.ops.len() as u32).to_le_bytes());
            for op in &cmd.ops {
                match op {
                    Op::Put(k, v) => {
                        out.push(PUT);
                        put_bytes(out, k.as_bytes());
                        put_bytes(out, v);
                    }
                    Op::Delete(k) => {
                        out.push(DELETE);
                        put_bytes(out, k.as_bytes());
                    }
                }
            }
        }
        EntryPayload::Membership(m) => {
            // rare: its own structure stays JSON
            out.push(MEMBERSHIP);
            let json = serde_json::to_vec(m).map_err(|e| DecodeError(e.to_string()))?;
            put_bytes(out, &json);
        }
    }
    Ok(())
}

/// The encoding of one log entry.
pub fn encode_entry(e: &Entry) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(64 + entry_size_hint(e));
    out.push(MAGIC);
    put_entry(&mut out, e)?;
    Ok(out)
}

fn entry_size_hint(e: &Entry) -> usize {
    match &e.payload {
        EntryPayload::Normal(c) => c
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => 9 + k.len() + v.len(),
                Op::Delete(k) => 5 + k.len(),
            })
            .sum(),
        _ => 0,
    }
}

pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>) -> Result<Vec<u8>, DecodeError> {
    let size: usize = req.entries.iter().map(|e| 32 + entry_size_hint(e)).sum();
    let mut out = Vec::with_capacity(64 + size);
    out.push(MAGIC);
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.prev_log_id);
    put_opt_log_id(&mut out, &req.leader_commit);
    out.extend_from_slice(&(req.entries.len() as u32).to_le_bytes());
    for e in &req.entries {
        put_entry(&mut out, e)?;
    }
    Ok(out)
}

pub fn encode_append_response(r: &AppendEntriesResponse<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.push(MAGIC);
    match r {
        AppendEntriesResponse::Success => out.push(0),
        AppendEntriesResponse::PartialSuccess(l) => {
            out.push(1);
            put_opt_log_id(&mut out, l);
        }
        AppendEntriesResponse::Conflict => out.push(2),
        AppendEntriesResponse::HigherVote(v) => {
            out.push(3);
            put_vote(&mut out, v);
        }
    }
    out
}

// ---- reading ----

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("a key is not UTF-8"))
    }

    /// A count of items each at least `min` bytes long: refused if they cannot fit.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(bad("count larger than the record"));
        }
        Ok(n)
    }

    fn log_id(&mut self) -> Result<LogId, DecodeError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let index = self.u64()?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn opt_log_id(&mut self) -> Result<Option<LogId>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            _ => Err(bad("bad option tag")),
        }
    }

    fn vote(&mut self) -> Result<Vote, DecodeError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let committed = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(bad("bad vote flag")),
        };
        Ok(Vote {
            leader_id: LeaderId::new(term, node),
            committed,
        })
    }

    fn op(&mut self) -> Result<Op, DecodeError> {
        match self.u8()? {
            PUT => Ok(Op::Put(self.string()?, self.bytes()?.to_vec())),
            DELETE => Ok(Op::Delete(self.string()?)),
            _ => Err(bad("bad operation tag")),
        }
    }

    fn entry(&mut self) -> Result<Entry, DecodeError> {
        let log_id = self.log_id()?;
        let payload = match self.u8()? {
            BLANK => EntryPayload::Blank,
            NORMAL => {
                let n = self.count(5)?;
                let ops = (0..n).map(|_| self.op()).collect::<Result<_, _>>()?;
                EntryPayload::Normal(Command { ops })
            }
            MEMBERSHIP => {
                let json = self.bytes()?;
                EntryPayload::Membership(
                    serde_json::from_slice(json).map_err(|e| DecodeError(e.to_string()))?,
                )
            }
            _ => return Err(bad("bad payload tag")),
        };
        Ok(Entry { log_id, payload })
    }

    fn start(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != MAGIC {
            return Err(bad("not a binary record"));
        }
        Ok(r)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        }
    }
}

/// A log entry in this encoding or, as earlier versions stored it, JSON.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    if !is_binary(bytes) {
        return serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()));
    }
    let mut r = Reader::start(bytes)?;
    let e = r.entry()?;
    r.end()?;
    Ok(e)
}

pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, DecodeError> {
    let mut r = Reader::start(bytes)?;
    let vote = r.vote()?;
    let prev_log_id = r.opt_log_id()?;
    let leader_commit = r.opt_log_id()?;
    let n = r.count(25)?;
    let entries = (0..n).map(|_| r.entry()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

pub fn decode_append_response(bytes: &[u8]) -> Result<AppendEntriesResponse<NodeId>, DecodeError> {
    let mut r = Reader::start(bytes)?;
    let resp = match r.u8()? {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(r.opt_log_id()?),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(r.vote()?),
        _ => return Err(bad("bad response tag")),
    };
    r.end()?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::raft::types::ClusterNode;
    use std::collections::{BTreeMap, BTreeSet};

    fn lid(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn entries() -> Vec<Entry> {
        let nodes = BTreeMap::from([(7u64, ClusterNode::default())]);
        let m = openraft::Membership::new(vec![BTreeSet::from([7u64])], nodes);
        vec![
            Entry {
                log_id: lid(1, 7, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: lid(2, 7, 2),
                payload: EntryPayload::Membership(m),
            },
            Entry {
                log_id: lid(u64::MAX, 9, 3),
                payload: EntryPayload::Normal(Command {
                    ops: vec![
                        Op::Put("logical/ab/cd".into(), vec![0, 1, 255]),
                        Op::Delete("x".into()),
                        Op::Put(String::new(), vec![]),
                    ],
                }),
            },
        ]
    }

    #[test]
    fn entries_round_trip_and_json_still_reads() {
        for e in entries() {
            let b = encode_entry(&e).unwrap();
            assert!(is_binary(&b));
            assert_eq!(decode_entry(&b).unwrap(), e);
            let json = serde_json::to_vec(&e).unwrap();
            assert_eq!(decode_entry(&json).unwrap(), e);
        }
    }

    #[test]
    fn append_exchange_round_trips() {
        let req = AppendEntriesRequest {
            vote: Vote {
                leader_id: LeaderId::new(4, 9),
                committed: true,
            },
            prev_log_id: Some(lid(3, 9, 17)),
            entries: entries(),
            leader_commit: None,
        };
        let got = decode_append(&encode_append(&req).unwrap()).unwrap();
        assert_eq!(got.vote, req.vote);
        assert_eq!(got.prev_log_id, req.prev_log_id);
        assert_eq!(got.leader_commit, req.leader_commit);
        assert_eq!(got.entries, req.entries);
        for r in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(lid(1, 2, 3))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(req.vote),
        ] {
            assert_eq!(
                decode_append_response(&encode_append_response(&r)).unwrap(),
                r
            );
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let e = &entries()[2];
        let b = encode_entry(e).unwrap();
        for cut in 0..b.len() {
            assert!(decode_entry(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_entry(&long).is_err());
        // a huge count does not allocate or read past the end
        let mut huge = vec![MAGIC];
        huge.extend_from_slice(&[0u8; 24]);
        huge.push(NORMAL);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_entry(&huge).is_err());
        let mut ops = b[..26].to_vec();
        ops.extend_from_slice(&1u32.to_le_bytes());
        ops.push(9);
        assert!(decode_entry(&ops).is_err());
        assert!(decode_append(&[MAGIC, 1, 2]).is_err());
        assert!(decode_append_response(&[MAGIC, 7]).is_err());
    }
}
