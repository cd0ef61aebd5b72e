//! The refusal rules of docs/protocol.md: every rule under which an implementation refuses bytes
//! it received (or a request a peer made), and which rules the vector files pin. A rule is pinned
//! when an invalid case is named after it (the rule id in the case's `name`), or a refused delivery
//! of a case says it in its `note`. `sotto check` prints the line `rules pinned by vectors` from
//! these; docs/coverage.md lists the rules that no vector can pin, with the reason.
//!
//! Server-side refusals (BROKER-*, TLS-1) and the device store's (STORE-*) are tested by the
//! shells' tests and the wiretap, not by vectors, and are not in this list.

use std::collections::BTreeSet;

use serde_json::Value;

/// Every refusal rule of docs/protocol.md that a vector can state: decoding, signatures, key
/// agreement, sessions, groups and the limits.
pub const REFUSAL_RULES: &[&str] = &[
    "NOT-2", "NOT-3", "NOT-5", "PRIM-1", "PRIM-2", "ID-1", "ID-4", "KEY-2", "KEY-3", "KEY-5",
    "SIGNUP-1", "SIGNUP-2", "SIGNUP-3", "CARD-1", "CARD-3", "X3DH-6", "X3DH-8", "X3DH-9", "KS-4",
    "CHAIN-6", "EPOCH-4", "EPOCH-5", "ENV-1", "ENV-6", "IN-1", "IN-3", "IN-4", "RX-2", "RX-3",
    "RX-7", "RX-8", "RX-9", "GRP-2", "GRP-4", "GRP-6", "GRP-7", "GRP-9", "GRP-11", "GRP-12",
    "LIM-1", "LIM-2", "LIM-3", "LIM-4", "LIM-5", "LIM-6", "LIM-7", "LIM-8", "LIM-9", "LIM-10",
    "LIM-11", "LIM-12", "LIM-13", "LIM-14", "LIM-15", "LIM-16", "LIM-17", "LIM-18",
];

/// The rule ids (`X3DH-6`, `LIM-13`) a text names.
pub fn rule_ids(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| {
            t.split_once('-').is_some_and(|(a, n)| {
                !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    && a.as_bytes()[0].is_ascii_uppercase()
                    && !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
            })
        })
}

/// Adds to `out` every error code a JSON value expects: each `"error": "<code>"` or
/// `"retry": "<code>"` of an invalid case or delivery, and each `"refused": "<code>"` of a group
/// control received over a session.
pub fn refusal_codes(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("error" | "retry" | "refused", Value::String(code)) => {
                        out.insert(code.clone());
                    }
                    _ => refusal_codes(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refusal_codes(v, out)),
        _ => {}
    }
}

/// Whether a JSON value expects a refusal somewhere ([`refusal_codes`] finds a code).
pub fn expects_refusal(v: &Value) -> bool {
    let mut codes = BTreeSet::new();
    refusal_codes(v, &mut codes);
    !codes.is_empty()
}

/// Adds to `out` the rules one vector file pins (see the module documentation).
pub fn pinned_by(file: &Value, out: &mut BTreeSet<String>) {
    let Some(cases) = file.get("cases").and_then(Value::as_array) else {
        return;
    };
    for case in cases {
        if !expects_refusal(case) {
            continue;
        }
        if let Some(name) = case.get("name").and_then(Value::as_str) {
            out.extend(rule_ids(name).map(str::to_owned));
        }
        for d in case
            .get("deliveries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(note), Some(expect)) =
                (d.get("note").and_then(Value::as_str), d.get("expect"))
            {
                if expects_refusal(expect) {
                    out.extend(rule_ids(note).map(str::to_owned));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_found_in_names_and_notes() {
        let ids: Vec<&str> =
            rule_ids("X3DH-8 LIM-13 a replayed (RX-2), not x-1 nor Req5-").collect();
        assert_eq!(ids, ["X3DH-8", "LIM-13", "RX-2"]);
    }

    #[test]
    fn only_invalid_cases_and_refused_deliveries_pin() {
        let file: Value = serde_json::from_str(
            r#"{"cases": [
                {"name": "KS-2 open", "expect": {"ok": {}}},
                {"name": "KS-4 tampered", "expect": {"error": "decrypt_failed"}},
                {"name": "X3DH-6 first", "deliveries": [
                    {"note": "RX-3 refused", "expect": {"error": "decrypt_failed"}},
                    {"note": "EPOCH-3 fine", "expect": {"ok": {}}},
                    {"note": "GRP-4 control refused", "expect": {"ok": {"group": {"refused": "not_a_member"}}}}
                ]}
            ]}"#,
        )
        .expect("json");
        let mut out = BTreeSet::new();
        pinned_by(&file, &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["GRP-4", "KS-4", "RX-3", "X3DH-6"]
        );
    }

    #[test]
    fn every_listed_rule_is_a_rule_of_the_spec() {
        let spec = include_str!("../../docs/protocol.md");
        for r in REFUSAL_RULES {
            assert!(
                spec.contains(&format!("**{r}**")),
                "{r} is not a rule of protocol.md"
            );
        }
    }
}
