//! `verify --pubkey`: the signed chain heads of an export's manifest against the public key and
//! the export's events (docs/audit.md, "Anchored chain heads").
//!
//! Checked, each failure its own problem naming the `tenant_seq`:
//! 1. every head's signature is the key's over this tenant's head (*bad head signature*);
//! 2. the exported event at each head's `tenant_seq` has exactly the head's hash (*head
//!    mismatch*: the chain was rewritten);
//! 3. in a contiguous export no head lies past the last event (*truncated tail*), and the newest
//!    head is at the last event (*unanchored*: nothing proves the tail was not cut off; an
//!    export made with the chain head key always signs its last event).
//!
//! A filtered export (env, team or time) holds only some of the chain: its heads are checked
//! for 1, and for 2 where the head's event is in the export.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use super::super::anchor::SignedHead;
use super::super::record::Manifest;
use super::{problem, Problem, ProblemKind};
use crate::events::codec::Hash;

/// The manifest's heads, their signatures checked, waiting for their events.
pub(super) struct Anchors {
    heads: BTreeMap<u64, SignedHead>,
    /// Heads whose event was read and matched.
    matched: u64,
}

impl Anchors {
    /// Parses the manifest's heads and checks every signature with `key`.
    pub(super) fn new(key: &VerifyingKey, manifest: &Manifest) -> Result<Anchors, Problem> {
        let mut heads = BTreeMap::new();
        for head in &manifest.heads {
            let bad = |detail: String| {
                problem(
                    None,
                    Some(head.tenant_seq),
                    ProblemKind::BadHeadSignature,
                    detail,
                )
            };
            let signed = head
                .parse()
                .map_err(|e| bad(format!("the manifest's signed head is malformed: {e}")))?;
            if !signed.verify(&manifest.tenant, key) {
                return Err(bad(format!(
                    "the signed head of tenant {} does not verify with the public key (signed \
                     with another key, or edited)",
                    manifest.tenant
                )));
            }
            heads.insert(signed.tenant_seq, signed);
        }
        Ok(Anchors { heads, matched: 0 })
    }

    /// An exported event (its hash already checked against its body).
    pub(super) fn event(&mut self, line: u64, tenant_seq: u64, hash: &Hash) -> Result<(), Problem> {
        let Some(head) = self.heads.get(&tenant_seq) else {
            return Ok(());
        };
        if head.hash != *hash {
            return Err(problem(
                Some(line),
                Some(tenant_seq),
                ProblemKind::HeadMismatch,
                "the event's hash is not the signed head's: the chain was rewritten".to_owned(),
            ));
        }
        self.matched += 1;
        Ok(())
    }

    /// After the last event (`last`): the tail. Returns the summary's words.
    pub(super) fn finish(&self, manifest: &Manifest, last: Option<u64>) -> Result<String, Problem> {
        let newest = self.heads.keys().next_back().copied();
        if manifest.contiguous {
            let at = |seq: Option<u64>, kind, detail: String| problem(None, seq, kind, detail);
            if let (Some(newest), Some(last)) = (newest, last) {
                if newest > last {
                    return Err(at(
                        Some(newest),
                        ProblemKind::TruncatedTail,
                        format!(
                            "a signed head lies past the export's last event (tenant_seq \
                             {last}): events were cut off its tail"
                        ),
                    ));
                }
            }
            match (newest, last) {
                (Some(newest), Some(last)) if newest == last => {}
                (newest, last) => {
                    let after = newest.map_or_else(
                        || "no event".to_owned(),
                        |seq| format!("no event after tenant_seq {seq}"),
                    );
                    return Err(at(
                        last,
                        ProblemKind::Unanchored,
                        format!(
                            "{after} is covered by a signed head, so a cut-off tail cannot be \
                             ruled out; export with the chain head key (global/chain_head_key), \
                             which signs the last event"
                        ),
                    ));
                }
            }
        }
        Ok(format!(
            "{} signed heads verified with the public key ({} matched exported events)",
            self.heads.len(),
            self.matched
        ))
    }
}
