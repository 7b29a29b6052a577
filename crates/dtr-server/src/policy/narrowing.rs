//! How a reviewer may narrow RFC 9396 `authorization_details` (DTR-24:
//! approve less than was asked, never more), per type, from
//! `[[authorization_details_types]]`:
//!
//! ```toml
//! [[authorization_details_types]]
//! type = "payment_initiation"
//! decrease = ["instructedAmount.amount"]   # may only go down
//! equal = ["instructedAmount.currency", "creditorAccount.iban"]
//! droppable = true                         # an entry may be left out
//! ```
//!
//! A narrowed entry keeps the requested entry's shape exactly (the same
//! fields, nothing added or removed: a removed field could be a removed
//! restriction) and its values, except the `decrease` fields, which may be
//! lower (numbers or numeric strings, compared exactly). `equal` names
//! fields that must stay as asked; every field not in `decrease` must
//! anyway, so it documents intent and is checked to exist in the rule's
//! sense only. Entries of a type without a rule can be kept as asked but
//! never changed or dropped. Anything else is not a narrowing and is
//! refused. Pure logic, no I/O.

use super::details::compare_numbers;
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::HashMap;

/// One `[[authorization_details_types]]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DetailsTypeConfig {
    /// The `type` of the entries it governs.
    #[serde(rename = "type")]
    pub kind: String,
    /// Dotted paths of numeric fields a reviewer may lower.
    #[serde(default)]
    pub decrease: Vec<String>,
    /// Dotted paths of fields that must stay as asked.
    #[serde(default)]
    pub equal: Vec<String>,
    /// Whether a reviewer may leave such an entry out.
    #[serde(default)]
    pub droppable: bool,
}

/// The narrowing rules of every configured type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NarrowingRules {
    by_type: HashMap<String, DetailsTypeConfig>,
}

/// A narrowing aligned with the request: one slot per requested entry,
/// `None` where the entry was dropped.
pub type Aligned = Vec<Option<Value>>;

impl NarrowingRules {
    /// Checks and indexes the tables; the error names the offending key.
    pub fn new(types: &[DetailsTypeConfig]) -> Result<Self, String> {
        let mut by_type = HashMap::new();
        for (i, t) in types.iter().enumerate() {
            if t.kind.is_empty() {
                return Err(format!(
                    "authorization_details_types[{i}].type: must not be empty"
                ));
            }
            for (key, paths) in [("decrease", &t.decrease), ("equal", &t.equal)] {
                if paths
                    .iter()
                    .any(|p| p.is_empty() || p.split('.').any(str::is_empty))
                {
                    return Err(format!(
                        "authorization_details_types[{i}].{key}: paths are dotted field names"
                    ));
                }
            }
            if let Some(p) = t.decrease.iter().find(|p| t.equal.contains(p)) {
                return Err(format!(
                    "authorization_details_types[{i}].equal: '{p}' is also in decrease"
                ));
            }
            if by_type.insert(t.kind.clone(), t.clone()).is_some() {
                return Err(format!(
                    "authorization_details_types[{i}].type: '{}' appears twice",
                    t.kind
                ));
            }
        }
        Ok(Self { by_type })
    }

    /// The rule of entries of `kind`, if one is configured.
    pub fn rule(&self, kind: &str) -> Option<&DetailsTypeConfig> {
        self.by_type.get(kind)
    }

    /// Aligns a reviewer's `narrowed` list with the `requested` one, in
    /// order, entries left out where their type allows it; `Err` says why
    /// it is not a narrowing.
    pub fn align(&self, requested: &[Value], narrowed: &[Value]) -> Result<Aligned, String> {
        let mut out = Vec::with_capacity(requested.len());
        let mut next = narrowed.iter().peekable();
        // Why the last candidate did not match its entry, for the answer
        // when nothing else explains a refusal.
        let mut mismatch = None;
        for (i, r) in requested.iter().enumerate() {
            let rule = type_of(r).and_then(|t| self.by_type.get(t));
            match next.peek() {
                Some(n) if type_of(n) == type_of(r) => {
                    let rule_paths = rule.map(|t| t.decrease.as_slice()).unwrap_or(&[]);
                    match check(r, n, rule_paths, &mut Vec::new()) {
                        Ok(()) => {
                            out.push(Some((*n).clone()));
                            next.next();
                            continue;
                        }
                        // Not this entry: it may be a later one of the
                        // same type, with this one dropped.
                        Err(e) if !rule.is_some_and(|t| t.droppable) => {
                            return Err(format!("authorization_details[{i}]: {e}"))
                        }
                        Err(e) => mismatch = Some(format!("authorization_details[{i}]: {e}")),
                    }
                }
                _ => {}
            }
            if !rule.is_some_and(|t| t.droppable) {
                return Err(format!(
                    "authorization_details[{i}] (type {}) may not be left out",
                    type_of(r).unwrap_or("?")
                ));
            }
            out.push(None);
        }
        if next.next().is_some() {
            return Err(mismatch.unwrap_or_else(|| {
                "authorization_details: an entry that was not requested, or out of order".into()
            }));
        }
        Ok(out)
    }

    /// What every approver allowed (four eyes): an entry any of them
    /// dropped is dropped; a `decrease` field takes the lowest value.
    pub fn compose(&self, all: &[Aligned]) -> Aligned {
        let Some(first) = all.first() else {
            return Vec::new();
        };
        let mut out = first.clone();
        for other in &all[1..] {
            for (slot, o) in out.iter_mut().zip(other) {
                *slot = match (slot.take(), o) {
                    (Some(mut a), Some(b)) => {
                        let decrease = type_of(&a)
                            .and_then(|t| self.by_type.get(t))
                            .map(|t| t.decrease.clone())
                            .unwrap_or_default();
                        for path in &decrease {
                            let segs: Vec<&str> = path.split('.').collect();
                            if let (Some(x), Some(y)) = (lookup(&a, &segs), lookup(b, &segs)) {
                                if compare_numbers(y, x) == Some(Ordering::Less) {
                                    let y = y.clone();
                                    set(&mut a, &segs, y);
                                }
                            }
                        }
                        Some(a)
                    }
                    _ => None,
                };
            }
        }
        out
    }
}

/// The granted list: the entries kept.
pub fn granted(aligned: &Aligned) -> Value {
    Value::Array(aligned.iter().flatten().cloned().collect())
}

/// The aligned form of the request itself (a plain approval).
pub fn as_requested(requested: &[Value]) -> Aligned {
    requested.iter().cloned().map(Some).collect()
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// The value at a dotted path of an entry.
pub fn field<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    lookup(v, &path.split('.').collect::<Vec<_>>())
}

/// Sets the value at a dotted path of an entry (which must exist).
pub fn set_field(v: &mut Value, path: &str, to: Value) {
    set(v, &path.split('.').collect::<Vec<_>>(), to)
}

fn lookup<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, seg| cur.get(seg))
}

fn set(v: &mut Value, path: &[&str], to: Value) {
    if let Some((last, init)) = path.split_last() {
        let mut cur = v;
        for seg in init {
            match cur.get_mut(seg) {
                Some(next) => cur = next,
                None => return,
            }
        }
        if let Some(obj) = cur.as_object_mut() {
            obj.insert((*last).to_owned(), to);
        }
    }
}

/// Whether `n` narrows `r` where only the `decrease` paths may differ
/// (and only downwards); `at` is the current path.
fn check(r: &Value, n: &Value, decrease: &[String], at: &mut Vec<String>) -> Result<(), String> {
    let here = at.join(".");
    if decrease.contains(&here) {
        return match compare_numbers(n, r) {
            Some(Ordering::Less | Ordering::Equal)
                if compare_numbers(n, &Value::from(0)) != Some(Ordering::Less) =>
            {
                Ok(())
            }
            Some(_) => Err(format!("{here} may only decrease")),
            None => Err(format!("{here} must be a number")),
        };
    }
    match (r, n) {
        (Value::Object(ro), Value::Object(no)) => {
            if ro.len() != no.len() || ro.keys().any(|k| !no.contains_key(k)) {
                return Err(format!(
                    "{}: fields may not be added or removed",
                    if here.is_empty() { "the entry" } else { &here }
                ));
            }
            for (k, rv) in ro {
                at.push(k.clone());
                let res = check(rv, &no[k], decrease, at);
                at.pop();
                res?;
            }
            Ok(())
        }
        _ if r == n => Ok(()),
        _ => Err(format!(
            "{} must stay as requested",
            if here.is_empty() { "the entry" } else { &here }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> NarrowingRules {
        NarrowingRules::new(&[DetailsTypeConfig {
            kind: "payment_initiation".into(),
            decrease: vec!["instructedAmount.amount".into()],
            equal: vec!["instructedAmount.currency".into()],
            droppable: true,
        }])
        .unwrap()
    }

    fn payment(amount: &str) -> Value {
        json!({"type": "payment_initiation",
               "instructedAmount": {"currency": "EUR", "amount": amount},
               "creditorName": "Merchant A"})
    }

    #[test]
    fn amounts_only_go_down_and_nothing_else_changes() {
        let r = rules();
        let asked = [payment("123.50")];
        assert_eq!(
            r.align(&asked, &[payment("100.00")]).unwrap(),
            vec![Some(payment("100.00"))]
        );
        assert!(r.align(&asked, &[payment("123.50")]).is_ok());
        let e = r.align(&asked, &[payment("200")]).unwrap_err();
        assert!(e.contains("only decrease"), "{e}");
        assert!(r.align(&asked, &[payment("-1")]).is_err());
        let mut other = payment("100");
        other["creditorName"] = "Mallory".into();
        assert!(r.align(&asked, &[other]).is_err());
        let mut added = payment("100");
        added["extra"] = true.into();
        assert!(r.align(&asked, &[added]).is_err());
        let mut currency = payment("100");
        currency["instructedAmount"]["currency"] = "USD".into();
        assert!(r.align(&asked, &[currency]).is_err());
    }

    #[test]
    fn entries_drop_only_where_allowed_and_never_appear() {
        let r = rules();
        let acct = json!({"type": "account_information", "actions": ["read"]});
        let asked = [payment("10"), acct.clone()];
        assert_eq!(
            r.align(&asked, std::slice::from_ref(&acct)).unwrap(),
            vec![None, Some(acct.clone())]
        );
        // account_information has no rule: it can be kept, not dropped.
        assert!(r.align(&asked, &[payment("10")]).is_err());
        // Nothing that was not asked.
        assert!(r
            .align(&asked, &[payment("10"), acct.clone(), acct.clone()])
            .is_err());
        assert_eq!(granted(&vec![None, Some(acct.clone())]), json!([acct]));
    }

    #[test]
    fn four_eyes_compose_to_what_everyone_allowed() {
        let r = rules();
        let asked = [payment("100"), payment("50")];
        let a = vec![Some(payment("80")), Some(payment("50"))];
        let b = vec![Some(payment("90")), None];
        assert_eq!(r.compose(&[a, b]), vec![Some(payment("80")), None]);
        assert_eq!(r.compose(&[as_requested(&asked)]), as_requested(&asked));
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = DetailsTypeConfig {
            kind: "x".into(),
            decrease: vec!["a".into()],
            equal: vec!["a".into()],
            droppable: false,
        };
        assert!(NarrowingRules::new(&[bad]).unwrap_err().contains("equal"));
        let twice = DetailsTypeConfig {
            kind: "x".into(),
            ..Default::default()
        };
        assert!(NarrowingRules::new(&[twice.clone(), twice])
            .unwrap_err()
            .contains("twice"));
    }
}
