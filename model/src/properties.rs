//! The properties, each named with the requirement or rule it checks.
//!
//! `always` properties are safety invariants checked in every reachable state; `sometimes`
//! properties are examples the checker must find, so that no invariant holds vacuously (and, for
//! the trust-on-first-use limit, so that the documented attack is shown). A property about a
//! feature the configuration does not use (groups in `small`, say) is left out of that
//! configuration rather than reported as holding.
//!
//! "Honest" below means: neither end was ever compromised, and the sender's keys for the
//! recipient were the recipient's own (a verified contact, or a directory bundle the server did
//! not forge). Messages to an unverified contact whose bundle the server forged are the
//! trust-on-first-use limit (CARD-4), shown by a `sometimes` property instead.

use crate::model::SottoModel;
use crate::scenario::{Config, Fault, Intent};
use crate::state::{Hold, Sent, State, What, flag};
use crate::term::{Atom, Const, Dev, Party, TermId};
use crate::variant::Variant;
use stateright::Property;

/// Property names, grep-able by requirement id.
pub mod names {
    /// Req8.
    pub const REQ8_SECRECY: &str = "Req8 secrecy: the server never learns an honest message";
    /// Req5.
    pub const REQ5_AGREEMENT: &str =
        "Req5 injective agreement: a message accepted from a verified contact was sent by it, once";
    /// Req5.
    pub const REQ5_NO_MITM_VERIFIED: &str =
        "Req5 no man-in-the-middle on a verified contact: the server cannot derive the session key";
    /// Forward secrecy.
    pub const FS: &str = "FS forward secrecy: a compromise reveals no message committed before it";
    /// Post-compromise secrecy.
    pub const PCS: &str = "PCS post-compromise secrecy: messages in epochs after the victim's next turn are secret (EPOCH-2)";
    /// Req6.
    pub const REQ6_NOTHING_HELD: &str =
        "Req6 the server holds no copy after the ack: every queue is empty when quiescent";
    /// Req6, RX-4.
    pub const RX4_ACKED_NOT_LOST: &str =
        "Req6 RX-4 an acknowledged message is committed or still in the device's hands";
    /// Req6, RX-4, RX-6.
    pub const RX4_EXACTLY_ONCE: &str = "Req6 RX-4 RX-6 exactly once: when quiescent every message is stored once and every outbox is empty";
    /// RX-2.
    pub const RX2_AT_MOST_ONCE: &str = "RX-2 no message is committed twice";
    /// GRP-6.
    pub const GRP6_REMOVED_MEMBER: &str =
        "GRP-6 a removed member, even with the server, cannot derive later group messages";
    /// GRP-3.
    pub const GRP3_CATCH_UP: &str = "GRP-3 when quiescent every member holds the current group epoch (offline members catch up)";
    /// Req1.
    pub const REQ1_NO_PERSONAL: &str = "Req1 no personal term reaches the server";
    /// Req7.
    pub const REQ7_STOLEN_STORE: &str =
        "Req7 a stolen store reveals no personal term and no identity key";
    /// X3DH-8.
    pub const X3DH8_REPLAY_REJECTED: &str =
        "X3DH-8 a replayed first message is rejected: no first message makes two sessions";

    /// RX-9, CARD-4.
    pub const RX9_IDENTITY_STABLE: &str = "RX-9 CARD-4 a contact's identity never changes, nor loses its verification, without the user's decision";
    /// SAFE-1.
    pub const SAFE1_TOFU_DISCOVERABLE: &str =
        "SAFE-1 TOFU a man-in-the-middle on an unverified contact shows in the safety number";
    /// GRP-4, GRP-11, GRP-12.
    pub const GRP12_ADMIN_CHAIN: &str = "GRP-4 GRP-12 admin chain: every group epoch a member holds was issued to it by the admin of the time, the role passing only by its admin's handover; one that left holds none until re-added";

    /// CARD-4 limit, an expected discovery.
    pub const TOFU_LIMIT: &str = "sometimes: CARD-4 trust-on-first-use limit: the server reads a message to an unverified contact whose bundle it forged";
    /// Non-vacuity of Req5.
    pub const S_VERIFIED_COMMIT: &str =
        "sometimes: Req5 a message from a verified contact is committed";
    /// Non-vacuity of the quiescent properties.
    pub const S_SETTLED: &str = "sometimes: Req6 the scenario completes and the system settles";
    /// RX-2.
    pub const S_DUPLICATE: &str = "sometimes: RX-2 a duplicate is dropped";
    /// X3DH-8.
    pub const S_REPLAY: &str =
        "sometimes: X3DH-8 a first message arrives again and is not accepted anew";
    /// Restart.
    pub const S_RESTART: &str = "sometimes: Req6 a message is committed after a broker restart";
    /// RX-6.
    pub const S_RESEND: &str = "sometimes: RX-6 a timeout resends a message";
    /// RX-8.
    pub const S_RETRY: &str = "sometimes: RX-8 an early envelope is kept and opened later";
    /// FS.
    pub const S_FS: &str = "sometimes: FS a compromise happens after a message was committed";
    /// FS limits of the protocol as specified (X3DH-7, X3DH-9), shown as examples.
    pub const S_FS_LIMIT: &str = "sometimes: FS limit (X3DH-7, X3DH-9): a compromise reads an epoch-0 message it could redo X3DH for";
    /// PCS.
    pub const S_PCS: &str = "sometimes: PCS a message in a healed epoch is committed";
    /// GRP-3.
    pub const S_CATCH_UP: &str =
        "sometimes: GRP-3 a member offline during a group change catches up";
    /// GRP-6.
    pub const S_AFTER_REMOVAL: &str = "sometimes: GRP-6 a group message is sent after a removal";
    /// Req7.
    pub const S_STOLEN: &str = "sometimes: Req7 a device's store is stolen";
    /// CARD-4.
    pub const S_FORGED_REJECTED: &str = "sometimes: CARD-4 KEY-5 a forged bundle is rejected";
    /// EPOCH-2.
    pub const S_EPOCHS: &str = "sometimes: EPOCH-2 a conversation reaches its third epoch";
    /// GRP-11.
    pub const S_LEAVE: &str = "sometimes: GRP-11 a member leaves and its admin removes it";
    /// GRP-12.
    pub const S_HANDOVER: &str =
        "sometimes: GRP-12 a member accepts the group key of the admin it was handed over to";
}

use names::*;

/// Every property, before filtering by configuration. Each is wrapped in a latch (indices 0..15
/// and 32..34 for `always`, 16..31 and 35.. for `sometimes`; see [`SottoModel::holds`] and
/// [`SottoModel::once`]).
pub fn all() -> Vec<Property<SottoModel>> {
    vec![
        Property::always(REQ8_SECRECY, |m, s: &State| {
            m.holds(0, || req8_secrecy(m, s))
        }),
        Property::always(REQ5_AGREEMENT, |m, s: &State| {
            m.holds(1, || req5_agreement(m, s))
        }),
        Property::always(REQ5_NO_MITM_VERIFIED, |m, s: &State| {
            m.holds(2, || req5_no_mitm(m, s))
        }),
        Property::always(FS, |m, s: &State| m.holds(3, || forward_secrecy(m, s))),
        Property::always(PCS, |m, s: &State| m.holds(4, || post_compromise(m, s))),
        Property::always(REQ6_NOTHING_HELD, |m, s: &State| {
            m.holds(5, || req6_nothing_held(m, s))
        }),
        Property::always(RX4_ACKED_NOT_LOST, |m, s: &State| {
            m.holds(6, || rx4_acked_not_lost(m, s))
        }),
        Property::always(RX4_EXACTLY_ONCE, |m, s: &State| {
            m.holds(7, || rx4_exactly_once(m, s))
        }),
        Property::always(RX2_AT_MOST_ONCE, |m, s: &State| {
            m.holds(8, || rx2_at_most_once(m, s))
        }),
        Property::always(GRP6_REMOVED_MEMBER, |m, s: &State| {
            m.holds(9, || grp6_removed_member(m, s))
        }),
        Property::always(GRP3_CATCH_UP, |m, s: &State| {
            m.holds(10, || grp3_catch_up(m, s))
        }),
        Property::always(REQ1_NO_PERSONAL, |m, s: &State| {
            m.holds(11, || req1_no_personal(m, s))
        }),
        Property::always(REQ7_STOLEN_STORE, |m, s: &State| {
            m.holds(12, || req7_stolen_store(m, s))
        }),
        Property::always(X3DH8_REPLAY_REJECTED, |m, s: &State| {
            m.holds(13, || x3dh8_one_session_per_first_message(m, s))
        }),
        Property::always(RX9_IDENTITY_STABLE, |m, s: &State| {
            m.holds(32, || identity_stable(s))
        }),
        Property::always(SAFE1_TOFU_DISCOVERABLE, |m, s: &State| {
            m.holds(33, || tofu_discoverable(m, s))
        }),
        Property::always(GRP12_ADMIN_CHAIN, |m, s: &State| {
            m.holds(34, || admin_chain(s))
        }),
        Property::sometimes(TOFU_LIMIT, |m, s: &State| m.once(16, || tofu_limit(m, s))),
        Property::sometimes(S_VERIFIED_COMMIT, |m, s: &State| {
            m.once(17, || verified_commit(s))
        }),
        Property::sometimes(S_SETTLED, |m, s: &State| {
            m.once(18, || {
                s.pc as usize == m.config.script.len() && m.quiescent(s)
            })
        }),
        Property::sometimes(S_DUPLICATE, |m, s: &State| {
            m.once(19, || s.flags & flag::DUPLICATE_DROPPED != 0)
        }),
        Property::sometimes(S_REPLAY, |m, s: &State| {
            m.once(20, || s.flags & flag::REPLAY_REJECTED != 0)
        }),
        Property::sometimes(S_RESTART, |m, s: &State| {
            m.once(21, || s.flags & flag::DELIVERED_AFTER_RESTART != 0)
        }),
        Property::sometimes(S_RESEND, |m, s: &State| {
            m.once(22, || s.flags & flag::RESENT != 0)
        }),
        Property::sometimes(S_RETRY, |m, s: &State| {
            m.once(23, || s.flags & flag::RETRIED != 0)
        }),
        Property::sometimes(S_FS, |m, s: &State| {
            m.once(24, || s.log.iter().any(|r| r.past))
        }),
        Property::sometimes(S_FS_LIMIT, |m, s: &State| {
            m.once(25, || fs_limit_read(m, s))
        }),
        Property::sometimes(S_PCS, |m, s: &State| {
            m.once(26, || s.flags & flag::HEALED != 0)
        }),
        Property::sometimes(S_CATCH_UP, |m, s: &State| {
            m.once(27, || s.flags & flag::OFFLINE_CAUGHT_UP != 0)
        }),
        Property::sometimes(S_AFTER_REMOVAL, |m, s: &State| {
            m.once(28, || {
                s.group_log
                    .iter()
                    .any(|g| removed_before(s, g.epoch, g.members) != 0)
            })
        }),
        Property::sometimes(S_STOLEN, |m, s: &State| m.once(29, || s.stolen.is_some())),
        Property::sometimes(S_FORGED_REJECTED, |m, s: &State| {
            m.once(30, || s.flags & flag::FORGED_REJECTED != 0)
        }),
        Property::sometimes(S_EPOCHS, |m, s: &State| {
            m.once(31, || {
                s.devices
                    .iter()
                    .any(|d| d.sessions.iter().any(|x| x.newest >= 2))
            })
        }),
        Property::sometimes(S_LEAVE, |m, s: &State| {
            m.once(35, || s.flags & flag::LEAVE_REMOVED != 0)
        }),
        Property::sometimes(S_HANDOVER, |m, s: &State| {
            m.once(36, || s.flags & flag::HANDOVER_ACCEPTED != 0)
        }),
    ]
}

/// Whether a property applies to a configuration (features it does not use are left out).
pub fn relevant(name: &str, c: &Config) -> bool {
    let b = &c.budgets;
    let has = |f: fn(&Intent) -> bool| c.script.iter().any(f);
    let group = has(|i| matches!(i, Intent::GroupCreate { .. }));
    let leave = has(|i| matches!(i, Intent::GroupLeave { .. }));
    let removal = leave || has(|i| matches!(i, Intent::GroupRemove { .. }));
    let handover = has(|i| matches!(i, Intent::GroupHandover { .. }));
    let offline = has(|i| matches!(i, Intent::GoOffline(_)));
    let unverified_fetch = c.script.iter().enumerate().any(|(k, i)| match i {
        Intent::FetchBundle { by, of } => {
            !c.script[..k].contains(&Intent::ScanCard { by: *by, of: *of })
        }
        _ => false,
    });
    if c.skip.iter().any(|x| x == name) {
        return false;
    }
    match name {
        GRP6_REMOVED_MEMBER | S_AFTER_REMOVAL => removal,
        GRP3_CATCH_UP | GRP12_ADMIN_CHAIN => group,
        S_LEAVE => leave,
        S_HANDOVER => handover,
        SAFE1_TOFU_DISCOVERABLE => b.forge_bundles && unverified_fetch,
        S_CATCH_UP => group && offline,
        FS | PCS | S_FS | S_FS_LIMIT | S_PCS => b.total(Fault::Compromise) > 0,
        REQ7_STOLEN_STORE | S_STOLEN => b.total(Fault::Steal) > 0,
        TOFU_LIMIT => b.forge_bundles && unverified_fetch,
        S_FORGED_REJECTED => b.forge_bundles,
        S_RESTART => b.total(Fault::Restart) > 0,
        S_RETRY => b.total(Fault::Reorder) > 0,
        S_REPLAY => b.total(Fault::Replay) > 0 || b.total(Fault::Duplicate) > 0,
        S_RESEND => b.total(Fault::Drop) > 0 || b.total(Fault::Restart) > 0,
        S_DUPLICATE => b.total(Fault::Duplicate) > 0 || b.total(Fault::Replay) > 0,
        _ => true,
    }
}

fn comp(s: &State, d: Dev) -> bool {
    s.compromised == Some(d)
}

fn knows_atom(m: &SottoModel, s: &State, a: Atom) -> bool {
    match m.t().read().lookup(&crate::term::Term::Atom(a)) {
        Some(id) => s.knowledge.knows(id),
        None => false,
    }
}

fn text_atom(w: What) -> Option<Atom> {
    match w {
        What::Text(i) => Some(Atom::Text(i)),
        _ => None,
    }
}

fn honest(s: &State, r: &Sent) -> bool {
    !comp(s, r.from) && !comp(s, r.to) && (r.verified || r.genuine)
}

/// Bit mask of devices that were members of an earlier group epoch but not of this one.
fn removed_before(s: &State, epoch: u8, members: u8) -> u8 {
    s.group_epochs
        .iter()
        .filter(|e| e.epoch < epoch)
        .fold(0, |m, e| m | e.members)
        & !members
}

/// Group epochs up to `epoch` had every group key sent over honest sessions.
fn group_sound(s: &State, epoch: u8) -> bool {
    s.log.iter().all(|r| match r.what {
        What::GroupKey(e) if e <= epoch => r.genuine || r.verified,
        _ => true,
    })
}

/// Req8: the attacker knows no honest pairwise text and no group text of a sound epoch without
/// compromised members.
fn req8_secrecy(m: &SottoModel, s: &State) -> bool {
    let pairwise = s.log.iter().all(|r| match text_atom(r.what) {
        Some(a) if honest(s, r) => !knows_atom(m, s, a),
        _ => true,
    });
    pairwise
        && s.group_log.iter().all(|g| {
            let clean = s.compromised.is_none_or(|v| g.members >> v.ix() & 1 == 0);
            !(clean && group_sound(s, g.epoch) && knows_atom(m, s, Atom::GroupText(g.msg)))
        })
}

/// Req5: injective agreement on messages from verified contacts.
fn req5_agreement(_m: &SottoModel, s: &State) -> bool {
    s.devices.iter().enumerate().all(|(ri, dev)| {
        let r = Dev::from_ix(ri);
        comp(s, r)
            || dev.store.iter().all(|st| {
                if !st.verified || comp(s, st.from) {
                    return true;
                }
                let sent = match st.what {
                    What::Text(i) => s
                        .log
                        .iter()
                        .any(|x| x.what == What::Text(i) && x.from == st.from && x.to == r),
                    What::GroupText(i) => {
                        s.group_log.iter().any(|g| g.msg == i && g.from == st.from)
                    }
                    What::Forged(_) => false,
                    _ => true,
                };
                let once = dev
                    .store
                    .iter()
                    .filter(|x| x.what == st.what && x.from == st.from)
                    .count()
                    == 1;
                sent && once
            })
    })
}

/// Req5: no uncompromised device has a session with a verified, uncompromised peer whose `SK`
/// the attacker can build.
fn req5_no_mitm(m: &SottoModel, s: &State) -> bool {
    let t = m.t().read();
    s.devices.iter().enumerate().all(|(i, dev)| {
        comp(s, Dev::from_ix(i))
            || dev
                .sessions
                .iter()
                .all(|x| !x.verified || comp(s, x.peer) || !s.knowledge.can_build(&t, x.sk))
    })
}

/// Forward secrecy: texts committed before the compromise stay secret.
fn forward_secrecy(m: &SottoModel, s: &State) -> bool {
    s.log.iter().all(|r| match text_atom(r.what) {
        Some(a) if r.past && !r.fs_limit && (r.verified || r.genuine) => !knows_atom(m, s, a),
        _ => true,
    })
}

/// Post-compromise secrecy: once the victim has drawn a fresh ratchet key after its compromise,
/// texts in that epoch and later ones are secret again, unless the attacker got something
/// accepted in the session meanwhile.
fn post_compromise(m: &SottoModel, s: &State) -> bool {
    let Some(v) = s.compromised else {
        return true;
    };
    s.log.iter().all(|r| {
        let Some(a) = text_atom(r.what) else {
            return true;
        };
        if !(r.from == v || r.to == v) || !(r.verified || r.genuine) {
            return true;
        }
        let peer = if r.from == v { r.to } else { r.from };
        let find = |d: Dev| s.dev(d).sessions.iter().find(|x| x.slot == r.slot);
        let (Some(vs), ps) = (find(v), find(peer)) else {
            return true;
        };
        let tainted = vs.tainted || ps.is_some_and(|p| p.tainted);
        match vs.heal {
            Some(h) if r.epoch >= h && !tainted => !knows_atom(m, s, a),
            _ => true,
        }
    })
}

/// Req6: a settled system leaves nothing on the server.
fn req6_nothing_held(m: &SottoModel, s: &State) -> bool {
    !m.quiescent(s) || s.queues.iter().all(|q| q.is_empty())
}

fn session_tainted(s: &State, d: Dev, r: &Sent) -> bool {
    s.dev(d)
        .sessions
        .iter()
        .any(|x| x.slot == r.slot && x.tainted)
}

/// RX-4: an acknowledged honest message is committed, or still in the device's hands.
fn rx4_acked_not_lost(_m: &SottoModel, s: &State) -> bool {
    s.log.iter().all(|r| {
        if !r.acked || !r.genuine || session_tainted(s, r.to, r) {
            return true;
        }
        let dev = s.dev(r.to);
        dev.has_committed_from(r.what, r.from)
            || dev.hold == Hold::Acked(r.env)
            || dev.retry.contains(&r.env)
    })
}

/// RX-4, RX-6: in a settled system every honest message is stored exactly once and every
/// outbox is empty.
fn rx4_exactly_once(m: &SottoModel, s: &State) -> bool {
    if !m.quiescent(s) {
        return true;
    }
    let stored_once = s.log.iter().all(|r| {
        !r.genuine
            || comp(s, r.from)
            || comp(s, r.to)
            || session_tainted(s, r.to, r)
            || s.dev(r.to)
                .store
                .iter()
                .filter(|x| x.what == r.what && x.from == r.from)
                .count()
                == 1
    });
    let settled = m.devs().all(|d| {
        s.dev(d).outbox.iter().all(|o| {
            s.log.iter().any(|r| {
                r.env == o.env
                    && (!r.genuine
                        || comp(s, r.from)
                        || comp(s, r.to)
                        || session_tainted(s, r.to, r))
            })
        })
    });
    stored_once && settled
}

/// RX-2: nothing is committed twice.
fn rx2_at_most_once(_m: &SottoModel, s: &State) -> bool {
    s.devices.iter().all(|d| {
        d.store.iter().enumerate().all(|(i, x)| {
            matches!(x.what, What::Forged(_))
                || !d.store[..i]
                    .iter()
                    .any(|y| y.what == x.what && y.from == x.from)
        })
    })
}

/// GRP-6: the attacker together with a removed member cannot derive a group text of an epoch
/// the member is not in.
fn grp6_removed_member(m: &SottoModel, s: &State) -> bool {
    s.group_log.iter().all(|g| {
        let removed = removed_before(s, g.epoch, g.members);
        let clean = s.compromised.is_none_or(|v| g.members >> v.ix() & 1 == 0);
        if removed == 0 || !clean || !group_sound(s, g.epoch) {
            return true;
        }
        let target = Atom::GroupText(g.msg);
        (0..m.config.devices as usize)
            .filter(|i| removed >> i & 1 == 1)
            .all(|i| {
                let x = Dev::from_ix(i);
                let mut k = (*s.knowledge).clone();
                let mut extra = m.leak(s, x);
                for e in s.group_epochs.iter().filter(|e| e.members >> i & 1 == 1) {
                    extra.extend([e.gmk, e.seeds]);
                }
                k.learn(m.t(), &extra);
                let t = m.t().read();
                t.lookup(&crate::term::Term::Atom(target))
                    .is_none_or(|id| !k.knows(id))
            })
    })
}

/// GRP-3: in a settled system the members of the newest group epoch hold it and removed
/// members hold no group.
fn grp3_catch_up(m: &SottoModel, s: &State) -> bool {
    let Some(last) = s.group_epochs.last() else {
        return true;
    };
    if !m.quiescent(s) {
        return true;
    }
    m.devs().all(|d| {
        let sent_honestly = s
            .log
            .iter()
            .filter(|r| r.to == d && matches!(r.what, What::GroupKey(_) | What::GroupRemoved(_)))
            .all(|r| r.genuine);
        if !sent_honestly {
            return true;
        }
        let held = s.dev(d).group.as_ref().map(|g| g.epoch);
        if last.members >> d.ix() & 1 == 1 {
            held == Some(last.epoch)
        } else {
            held.is_none()
        }
    })
}

/// Req1: no personal term of an uncompromised user is known to the server.
fn req1_no_personal(m: &SottoModel, s: &State) -> bool {
    m.devs()
        .all(|d| comp(s, d) || !knows_atom(m, s, Atom::Personal(d)))
}

/// Req7: a stolen (not compromised) device's store gives away no personal term, no identity key
/// and not the passphrase.
fn req7_stolen_store(m: &SottoModel, s: &State) -> bool {
    let Some(d) = s.stolen else { return true };
    if comp(s, d) {
        return true;
    }
    let p = Party::Dev(d);
    [
        Atom::Personal(d),
        Atom::IdSig(p),
        Atom::IdDh(p),
        Atom::Passphrase(d),
    ]
    .into_iter()
    .all(|a| !knows_atom(m, s, a))
}

/// X3DH-8: no device holds two sessions from one first message.
fn x3dh8_one_session_per_first_message(_m: &SottoModel, s: &State) -> bool {
    s.devices.iter().all(|d| {
        d.sessions
            .iter()
            .enumerate()
            .all(|(i, x)| !d.sessions[..i].iter().any(|y| y.slot == x.slot))
    })
}

fn verified_commit(s: &State) -> bool {
    s.devices.iter().any(|d| {
        d.store
            .iter()
            .any(|x| x.verified && x.honest && matches!(x.what, What::Text(_)))
    })
}

/// An FS limit case: a text committed before the compromise that the server reads.
fn fs_limit_read(m: &SottoModel, s: &State) -> bool {
    s.log
        .iter()
        .any(|r| r.past && r.fs_limit && text_atom(r.what).is_some_and(|a| knows_atom(m, s, a)))
}

/// The CARD-4 limit: a text to an unverified contact with a forged bundle is read by the server.
fn tofu_limit(m: &SottoModel, s: &State) -> bool {
    s.log.iter().any(|r| {
        !r.verified && !r.genuine && text_atom(r.what).is_some_and(|a| knows_atom(m, s, a))
    })
}

/// RX-9, CARD-4: every contact has the `IKs` it had when the user last decided about it, and is
/// still verified if it was then. Only a card scan (the user's decision) changes either.
fn identity_stable(s: &State) -> bool {
    s.devices.iter().all(|d| {
        d.contacts
            .iter()
            .all(|c| c.iks == c.decided_iks && (c.verified || !c.decided_verified))
    })
}

/// SAFE-1: the safety number a device computes for a contact, as the terms it hashes: both user
/// ids and the `IKs` it holds for each side (its own, and the contact's). In the broken variant
/// `safety-number-without-keys` only the user ids.
fn safety_number(m: &SottoModel, me: Dev, peer: Dev, peer_iks: TermId) -> Vec<TermId> {
    let t = m.t();
    let mine = t.pk(Atom::IdSig(Party::Dev(me)));
    let mut sides = vec![(me, Some(mine)), (peer, Some(peer_iks))];
    if m.variant == Variant::SafetyNumberWithoutKeys {
        sides.iter_mut().for_each(|x| x.1 = None);
    }
    sides.sort_by_key(|x| x.0);
    sides
        .into_iter()
        .flat_map(|(d, k)| [Some(t.cnst(Const::UserId(Party::Dev(d)))), k])
        .flatten()
        .collect()
}

/// SAFE-1: whenever a device holds keys for a contact that are not the contact's own (the
/// server forged them), the two people see different safety numbers when they compare: the
/// contact computes its number with its real `IKs` and, for the device, the `IKs` it holds
/// (the real one if it holds none yet, as it would get in person).
fn tofu_discoverable(m: &SottoModel, s: &State) -> bool {
    let t = m.t();
    m.devs().all(|d| {
        s.dev(d).contacts.iter().filter(|c| !c.genuine).all(|c| {
            let held_by_peer = s
                .dev(c.peer)
                .contact(d)
                .map_or_else(|| t.pk(Atom::IdSig(Party::Dev(d))), |x| x.iks);
            safety_number(m, d, c.peer, c.iks) != safety_number(m, c.peer, d, held_by_peer)
        })
    })
}

/// The admin of group epoch `epoch` by the ghost records: the creator, then each member an
/// admin of the time handed the role over to (GRP-12).
fn admin_of(s: &State, epoch: u8) -> Option<Dev> {
    let creator = s.group_epochs.first()?.admin;
    Some(
        s.handovers
            .iter()
            .filter(|h| h.epoch <= epoch)
            .fold(creator, |a, h| if h.from == a { h.to } else { a }),
    )
}

/// GRP-4, GRP-11, GRP-12: every group epoch was issued by the admin of its time, and every
/// group epoch a device holds is one of them (its key and seeds), listing the device, whose
/// first member is that admin; a device that left holds only epochs issued after its removal
/// (re-added). A compromised admin issues whatever the attacker wants, also to members that do
/// not know yet that it handed the role over: an epoch whose admin of the time is compromised,
/// or that a device accepted from the compromised admin it held then, is not checked.
fn admin_chain(s: &State) -> bool {
    let issued = s
        .group_epochs
        .iter()
        .all(|r| admin_of(s, r.epoch) == Some(r.admin));
    issued
        && s.devices.iter().enumerate().all(|(i, dev)| {
            let d = Dev::from_ix(i);
            dev.group.as_ref().is_none_or(|g| {
                let Some(admin) = admin_of(s, g.epoch) else {
                    return false;
                };
                let named = g.members.first().map(|m| m.dev);
                let trusted = named.is_some_and(|x| comp(s, x) && g.accepted_under == Some(x));
                if comp(s, admin) || trusted {
                    return true;
                }
                let Some(k) = s.group_epochs.iter().position(|r| {
                    r.epoch == g.epoch && r.gmk == g.gmk && r.seeds == g.seeds && r.admin == admin
                }) else {
                    return false;
                };
                let listed = |r: &crate::state::GroupEpochRec| r.members >> i & 1 == 1;
                let readded = s.group_left.iter().filter(|(x, _)| *x == d).all(|(_, at)| {
                    s.group_epochs
                        .get(*at as usize..k)
                        .is_some_and(|rs| rs.iter().any(|r| !listed(r)))
                });
                listed(&s.group_epochs[k])
                    && g.members.first().is_some_and(|m| m.dev == admin)
                    && readded
            })
        })
}
