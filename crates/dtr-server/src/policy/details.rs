//! Policy conditions on the fields of RFC 9396 `authorization_details`,
//! so that "payments over 10,000 go to review" is one rule:
//!
//! ```toml
//! [[policy]]
//! authorization_details_type = "payment_initiation"
//! authorization_details_match = { "instructedAmount.amount" = { gt = 10000 } }
//! action = "review"
//! ```
//!
//! Keys are dotted paths into one authorization details object (a numeric
//! segment indexes an array); values are tables of comparisons (`gt`,
//! `gte`, `lt`, `lte`, `eq`, `in`), all of which must hold. An operand that
//! is a number, or a string that reads as a decimal number, compares
//! numerically (RFC 9396 examples carry amounts as strings such as
//! `"123.50"`), exactly, without floating-point rounding; any other string
//! compares as text (byte order, which suits ISO 8601 dates); a boolean
//! only with `eq`/`in`.
//!
//! A field that is present but cannot be compared (a number written as
//! `"10 000"`, an object where a number was expected) is *indeterminate*:
//! the caller lets it match restrictive rules and not `allow` rules, so a
//! malformed value never slips past a review. A missing field simply does
//! not match. Pure logic, no I/O.

use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How one authorization details object fares against a rule's conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every condition holds.
    Match,
    /// Some condition fails, or a field is missing.
    NoMatch,
    /// No condition fails, but some field is present with a value that
    /// cannot be compared with the operand.
    Indeterminate,
}

/// The compiled `authorization_details_match` of one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailsMatch {
    conditions: Vec<FieldCondition>,
}

#[derive(Clone, Debug, PartialEq)]
struct FieldCondition {
    path: Vec<String>,
    comparisons: Vec<Comparison>,
}

#[derive(Clone, Debug, PartialEq)]
enum Comparison {
    /// `gt`, `gte`, `lt`, `lte`, `eq`: the field's ordering against the
    /// operand must be one of `accept`.
    Ordered {
        accept: &'static [Ordering],
        operand: Operand,
    },
    /// `in`: equal to one of these.
    In(Vec<Operand>),
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Number(Decimal),
    Text(String),
    Bool(bool),
}

impl DetailsMatch {
    /// Compiles the configured table. The error starts with the key below
    /// the rule (`authorization_details_match."a.b".gt: ...`) so that the
    /// configuration error names it.
    pub fn from_config(table: &BTreeMap<String, Value>) -> Result<Self, String> {
        const KEY: &str = "authorization_details_match";
        if table.is_empty() {
            return Err(format!("{KEY}: must name at least one field"));
        }
        let mut conditions = Vec::new();
        for (raw_path, ops) in table {
            let key = format!("{KEY}.\"{raw_path}\"");
            let path: Vec<String> = raw_path.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!(
                    "{key}: a field path is dot-separated names, none empty (like instructedAmount.amount)"
                ));
            }
            let Some(ops) = ops.as_object().filter(|o| !o.is_empty()) else {
                return Err(format!(
                    "{key}: must be a table of comparisons, like {{ gt = 10000 }} (gt, gte, lt, lte, eq, in)"
                ));
            };
            let mut comparisons = Vec::new();
            for (op, v) in ops {
                let key = format!("{key}.{op}");
                let accept: &'static [Ordering] = match op.as_str() {
                    "gt" => &[Ordering::Greater],
                    "gte" => &[Ordering::Greater, Ordering::Equal],
                    "lt" => &[Ordering::Less],
                    "lte" => &[Ordering::Less, Ordering::Equal],
                    "eq" => &[Ordering::Equal],
                    "in" => {
                        let items = v
                            .as_array()
                            .filter(|a| !a.is_empty())
                            .ok_or_else(|| format!("{key}: must be a non-empty array of values"))?;
                        let operands = items
                            .iter()
                            .map(|i| Operand::from_config(i).ok_or_else(|| format!("{key}: {}", Operand::EXPECTED)))
                            .collect::<Result<Vec<_>, _>>()?;
                        comparisons.push(Comparison::In(operands));
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "{KEY}.\"{raw_path}\": unknown comparison '{other}' (expected gt, gte, lt, lte, eq or in)"
                        ))
                    }
                };
                let operand = Operand::from_config(v)
                    .ok_or_else(|| format!("{key}: {}", Operand::EXPECTED))?;
                if matches!(operand, Operand::Bool(_)) && op != "eq" {
                    return Err(format!(
                        "{key}: a boolean can only be compared with eq or in"
                    ));
                }
                comparisons.push(Comparison::Ordered { accept, operand });
            }
            conditions.push(FieldCondition { path, comparisons });
        }
        Ok(Self { conditions })
    }

    /// Evaluates every condition against one authorization details object.
    pub fn evaluate(&self, detail: &Value) -> Outcome {
        let mut outcome = Outcome::Match;
        for c in &self.conditions {
            let Some(field) = lookup(detail, &c.path) else {
                return Outcome::NoMatch;
            };
            for cmp in &c.comparisons {
                match cmp.test(field) {
                    Some(true) => {}
                    Some(false) => return Outcome::NoMatch,
                    None => outcome = Outcome::Indeterminate,
                }
            }
        }
        outcome
    }
}

/// The order of two numbers, each a JSON number or a numeric string,
/// exactly (no floating point); `None` when either is not a number.
pub fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    let num = |v: &Value| match v {
        Value::Number(n) => Decimal::parse(&n.to_string()),
        Value::String(s) => Decimal::parse(s),
        _ => None,
    };
    Some(num(a)?.cmp(&num(b)?))
}

/// Follows a dotted path; a numeric segment indexes an array.
fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl Comparison {
    /// `None` when the field cannot be compared with the operand.
    fn test(&self, field: &Value) -> Option<bool> {
        match self {
            Self::Ordered { accept, operand } => {
                operand.compare(field).map(|o| accept.contains(&o))
            }
            Self::In(operands) => {
                let mut comparable = false;
                for o in operands {
                    match o.compare(field) {
                        Some(Ordering::Equal) => return Some(true),
                        Some(_) => comparable = true,
                        None => {}
                    }
                }
                comparable.then_some(false)
            }
        }
    }
}

impl Operand {
    const EXPECTED: &'static str = "must be a number, a numeric string, a string or a boolean";

    fn from_config(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => Decimal::parse(&n.to_string()).map(Self::Number),
            Value::String(s) => {
                Some(Decimal::parse(s).map_or_else(|| Self::Text(s.clone()), Self::Number))
            }
            Value::Bool(b) => Some(Self::Bool(*b)),
            _ => None,
        }
    }

    /// The field's ordering relative to this operand; `None` when the two
    /// are not comparable.
    fn compare(&self, field: &Value) -> Option<Ordering> {
        match (self, field) {
            (Self::Number(o), Value::Number(n)) => Some(Decimal::parse(&n.to_string())?.cmp(o)),
            (Self::Number(o), Value::String(s)) => Some(Decimal::parse(s)?.cmp(o)),
            (Self::Text(o), Value::String(s)) => Some(s.as_str().cmp(o.as_str())),
            (Self::Bool(o), Value::Bool(b)) => Some(b.cmp(o)),
            _ => None,
        }
    }
}

/// An exact decimal number: `0.d1d2... × 10^exp`, digits without leading
/// or trailing zeros (none at all for zero). Comparing these never rounds,
/// so `"10000.0000000000000001"` is above `10000` as it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    /// Parses JSON number syntax (RFC 8259 section 6): `-?int(.frac)?(e[+-]?exp)?`.
    /// Anything else (spaces, `+`, `inf`, thousands separators) is not a number.
    fn parse(s: &str) -> Option<Self> {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return None;
        }
        let exp: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                // Eighteen digits always fit an i64; more is no amount.
                if !all_digits(digits) || digits.len() > 18 {
                    return None;
                }
                e.parse().ok()?
            }
        };
        let mut digits: Vec<u8> = int
            .bytes()
            .chain(frac.unwrap_or("").bytes())
            .map(|b| b - b'0')
            .collect();
        let mut point = (int.len() as i64).checked_add(exp)?;
        let leading = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..leading);
        point = point.checked_sub(leading as i64)?;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Self {
                negative: false,
                digits,
                exp: 0,
            });
        }
        Some(Self {
            negative,
            digits,
            exp: point,
        })
    }

    fn signum(&self) -> i8 {
        match (self.digits.is_empty(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.signum(), other.signum());
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        // Same sign, both non-zero: compare magnitudes, reversed when negative.
        let magnitude = self
            .exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits));
        if a < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(toml_table: &str) -> Result<DetailsMatch, String> {
        let t: BTreeMap<String, Value> = toml::from_str(toml_table).map_err(|e| e.to_string())?;
        DetailsMatch::from_config(&t)
    }

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(dec("10000"), dec("10000.000"));
        assert_eq!(dec("1e4"), dec("10000"));
        assert_eq!(dec("0"), dec("-0.0"));
        assert!(dec("10000.0000000000000001") > dec("10000"));
        assert!(dec("9999.99") < dec("10000"));
        assert!(dec("-5") < dec("-4.5"));
        assert!(dec("-5") < dec("0"));
        assert!(dec("0.001") < dec("0.01"));
        assert!(dec("123.5") > dec("123.49"));
        assert!(dec("2.5E-3") < dec("0.0026"));
        assert!(dec("00042") == dec("42"));
    }

    #[test]
    fn non_numbers_are_not_decimals() {
        for s in [
            "",
            "-",
            "10 000",
            "1,000",
            "+1",
            "1.",
            ".5",
            "NaN",
            "inf",
            "0x10",
            "1e",
            "1e1234567890123456789",
            "12abc",
        ] {
            assert!(Decimal::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn payments_over_ten_thousand() {
        let m = compile(r#""instructedAmount.amount" = { gt = 10000 }"#).unwrap();
        let pay = |amount: Value| json!({"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": amount}});
        assert_eq!(m.evaluate(&pay(json!("10000.01"))), Outcome::Match);
        assert_eq!(m.evaluate(&pay(json!(20000))), Outcome::Match);
        assert_eq!(m.evaluate(&pay(json!(1.5e4))), Outcome::Match);
        assert_eq!(m.evaluate(&pay(json!("10000"))), Outcome::NoMatch);
        assert_eq!(m.evaluate(&pay(json!(123.5))), Outcome::NoMatch);
        // Present but not a number: never silently below the threshold.
        assert_eq!(m.evaluate(&pay(json!("10 000"))), Outcome::Indeterminate);
        assert_eq!(
            m.evaluate(&pay(json!({"value": 1}))),
            Outcome::Indeterminate
        );
        // Missing: does not match.
        assert_eq!(
            m.evaluate(&json!({"type": "payment_initiation"})),
            Outcome::NoMatch
        );
    }

    #[test]
    fn numeric_strings_in_config_and_ranges() {
        let m = compile(r#""amount" = { gte = "100", lt = 500.5 }"#).unwrap();
        assert_eq!(m.evaluate(&json!({"amount": 100})), Outcome::Match);
        assert_eq!(m.evaluate(&json!({"amount": "500.49"})), Outcome::Match);
        assert_eq!(m.evaluate(&json!({"amount": "500.5"})), Outcome::NoMatch);
        assert_eq!(m.evaluate(&json!({"amount": 99})), Outcome::NoMatch);
    }

    #[test]
    fn strings_booleans_and_in() {
        let m = compile(
            r#"
"instructedAmount.currency" = { in = ["EUR", "CHF"] }
"creditorAccount.iban" = { eq = "DE02100100109307118603" }
"urgent" = { eq = true }
"executionDate" = { lt = "2027-01-01" }
"#,
        )
        .unwrap();
        let ok = json!({
            "instructedAmount": {"currency": "CHF"},
            "creditorAccount": {"iban": "DE02100100109307118603"},
            "urgent": true,
            "executionDate": "2026-12-24",
        });
        assert_eq!(m.evaluate(&ok), Outcome::Match);
        let mut other = ok.clone();
        other["instructedAmount"]["currency"] = json!("USD");
        assert_eq!(m.evaluate(&other), Outcome::NoMatch);
        let mut late = ok.clone();
        late["executionDate"] = json!("2027-03-01");
        assert_eq!(m.evaluate(&late), Outcome::NoMatch);
        let mut not_bool = ok;
        not_bool["urgent"] = json!("yes");
        assert_eq!(m.evaluate(&not_bool), Outcome::Indeterminate);
    }

    #[test]
    fn array_indices_in_paths() {
        let m = compile(r#""locations.0" = { eq = "https://bank.example/" }"#).unwrap();
        assert_eq!(
            m.evaluate(&json!({"locations": ["https://bank.example/"]})),
            Outcome::Match
        );
        assert_eq!(m.evaluate(&json!({"locations": []})), Outcome::NoMatch);
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = compile(r#""a.b" = { greater = 1 }"#).unwrap_err();
        assert!(
            e.starts_with("authorization_details_match.\"a.b\": unknown comparison 'greater'"),
            "{e}"
        );
        let e = compile(r#""a..b" = { gt = 1 }"#).unwrap_err();
        assert!(e.starts_with("authorization_details_match.\"a..b\""), "{e}");
        let e = compile(r#""a" = 5"#).unwrap_err();
        assert!(
            e.starts_with("authorization_details_match.\"a\": must be a table"),
            "{e}"
        );
        let e = compile(r#""a" = { gt = true }"#).unwrap_err();
        assert!(e.starts_with("authorization_details_match.\"a\".gt"), "{e}");
        let e = compile(r#""a" = { in = [] }"#).unwrap_err();
        assert!(e.starts_with("authorization_details_match.\"a\".in"), "{e}");
        let e = compile(r#""a" = { eq = { x = 1 } }"#).unwrap_err();
        assert!(e.starts_with("authorization_details_match.\"a\".eq"), "{e}");
        assert!(compile("")
            .unwrap_err()
            .starts_with("authorization_details_match"));
    }
}
