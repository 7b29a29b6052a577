//! Who may decide a deferral: the acting identity ([`Actor`]), the
//! approvers a policy rule names ([`Approver`]), and the rule that joins
//! them ([`may_decide`]). Pure: the callers bring the facts (the actor's
//! roles and groups, the deferral's subject user and its client's owner).
//!
//! - Admins (the admin token, or a user with the `admin` role) may always
//!   decide.
//! - Anyone else decides only as one of the deferral's approvers: through
//!   the admin API or the review console with the `reviewer` role; at the
//!   interaction page as the signed-in user.
//! - A deferral whose rule names no approvers is decided by admins, and at
//!   its interaction page by the user the request is about (the page's
//!   default decider, see `grants::deferred::page_decider`).
//! - The subject of a request never approves it themselves, unless the
//!   rule says `approvers = ["subject"]` (the user decides their own).

use std::fmt;

/// The role that lets a user decide through the admin API and console.
pub const ROLE_REVIEWER: &str = "reviewer";
/// The role that lets a user decide anything and administer.
pub const ROLE_ADMIN: &str = "admin";

/// Who acts.
#[derive(Clone, PartialEq, Eq)]
pub enum Actor {
    /// The admin token (bootstrap and automation).
    AdminToken,
    /// A user: a reviewer with a personal token or a console session, or
    /// the signed-in user at an interaction page.
    User(UserActor),
}

/// A user acting, with what routing needs to know of them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserActor {
    /// Username (a user's `sub`).
    pub username: String,
    /// Roles (`reviewer`, `admin`).
    pub roles: Vec<String>,
    /// Groups (`fraud`, `kyc`, ...).
    pub groups: Vec<String>,
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.by())
    }
}

impl Actor {
    /// What the audit trail records: the username, or `admin` for the
    /// admin token.
    pub fn by(&self) -> String {
        match self {
            Self::AdminToken => "admin".into(),
            Self::User(u) => u.username.clone(),
        }
    }

    /// Whether the actor administers (may decide anything, may use the
    /// admin-only endpoints).
    pub fn is_admin(&self) -> bool {
        match self {
            Self::AdminToken => true,
            Self::User(u) => u.roles.iter().any(|r| r == ROLE_ADMIN),
        }
    }

    /// Whether the actor may decide through the admin API or the console
    /// at all (a reviewer or an admin).
    pub fn is_reviewer(&self) -> bool {
        match self {
            Self::AdminToken => true,
            Self::User(u) => u
                .roles
                .iter()
                .any(|r| r == ROLE_REVIEWER || r == ROLE_ADMIN),
        }
    }
}

/// One entry of a rule's `approvers`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Approver {
    /// `group:<name>`: any member of the group.
    Group(String),
    /// `user:<name>`: that user.
    User(String),
    /// `subject`: the user the request is about (the resource owner, the
    /// token exchange subject, the device grant's user).
    Subject,
    /// `owner`: the user the client is registered to.
    Owner,
}

impl Approver {
    /// Parses `group:x`, `user:x`, `subject` or `owner`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let named = |n: &str, what: &str| {
            if n.is_empty() || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
                Err(format!("'{s}': a {what} name is non-empty, without spaces"))
            } else {
                Ok(n.to_owned())
            }
        };
        match s {
            "subject" => Ok(Self::Subject),
            "owner" => Ok(Self::Owner),
            _ => match s.split_once(':') {
                Some(("group", n)) => named(n, "group").map(Self::Group),
                Some(("user", n)) => named(n, "user").map(Self::User),
                _ => Err(format!(
                    "'{s}' is not an approver: use \"group:<name>\", \"user:<name>\", \"subject\" or \"owner\""
                )),
            },
        }
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Group(g) => write!(f, "group:{g}"),
            Self::User(u) => write!(f, "user:{u}"),
            Self::Subject => f.write_str("subject"),
            Self::Owner => f.write_str("owner"),
        }
    }
}

/// The users a deferral is about, which `subject` and `owner` name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parties {
    /// The user the request is about, if it is about a user (`None` for
    /// client credentials, or a subject that is not a user).
    pub subject: Option<String>,
    /// The user the client is registered to (`[[clients]] owner`).
    pub owner: Option<String>,
}

/// Where a decision is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Venue {
    /// The admin API or the review console: users need the `reviewer` role.
    Review,
    /// The interaction page: the signed-in user, no role needed.
    InteractionPage,
}

/// Whether `actor` may decide a deferral routed to `approvers` (empty: the
/// default routing), about `parties`, at `venue`; `page_default` is the
/// interaction page's default decider for a deferral with no approvers.
pub fn may_decide(
    actor: &Actor,
    approvers: &[Approver],
    parties: &Parties,
    venue: Venue,
    page_default: Option<&str>,
) -> bool {
    if actor.is_admin() {
        return true;
    }
    let Actor::User(u) = actor else {
        return false;
    };
    if venue == Venue::Review && !actor.is_reviewer() {
        return false;
    }
    if approvers.is_empty() {
        return venue == Venue::InteractionPage && page_default == Some(u.username.as_str());
    }
    let is_subject = parties.subject.as_deref() == Some(u.username.as_str());
    // Four eyes start with two: the subject never approves their own
    // request, unless the rule hands the decision to the subject alone.
    if is_subject && approvers != [Approver::Subject] {
        return false;
    }
    approvers.iter().any(|a| match a {
        Approver::Group(g) => u.groups.iter().any(|x| x == g),
        Approver::User(n) => *n == u.username,
        Approver::Subject => is_subject,
        Approver::Owner => parties.owner.as_deref() == Some(u.username.as_str()),
    })
}

/// Whether any of `approvers` could name `actor`, judged without the
/// parties: a `group:` or `user:` entry that matches them, or a `subject`
/// or `owner` entry (which needs the parties to tell). When this is
/// false, [`may_decide`] is false for a non-admin whatever the parties, so
/// a caller may skip reading them.
pub fn may_be_named(actor: &Actor, approvers: &[Approver]) -> bool {
    let Actor::User(u) = actor else {
        return false;
    };
    approvers.iter().any(|a| match a {
        Approver::Group(g) => u.groups.iter().any(|x| x == g),
        Approver::User(n) => *n == u.username,
        Approver::Subject | Approver::Owner => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str], groups: &[&str]) -> Actor {
        Actor::User(UserActor {
            username: name.into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn approvers(list: &[&str]) -> Vec<Approver> {
        list.iter().map(|a| Approver::parse(a).unwrap()).collect()
    }

    #[test]
    fn parsing() {
        assert_eq!(
            Approver::parse("group:fraud"),
            Ok(Approver::Group("fraud".into()))
        );
        assert_eq!(
            Approver::parse("user:carol"),
            Ok(Approver::User("carol".into()))
        );
        assert_eq!(Approver::parse("subject"), Ok(Approver::Subject));
        assert_eq!(Approver::parse("owner"), Ok(Approver::Owner));
        for bad in ["", "group:", "carol", "role:admin", "user:a b"] {
            assert!(Approver::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Approver::Group("kyc".into()).to_string(), "group:kyc");
    }

    #[test]
    fn admins_always_reviewers_only_as_approvers() {
        let fraud = approvers(&["group:fraud", "user:carol"]);
        let p = Parties {
            subject: Some("alice".into()),
            owner: None,
        };
        let r = Venue::Review;
        assert!(may_decide(&Actor::AdminToken, &fraud, &p, r, None));
        assert!(may_decide(
            &user("root", &["admin"], &[]),
            &fraud,
            &p,
            r,
            None
        ));
        assert!(may_decide(
            &user("bob", &["reviewer"], &["fraud"]),
            &fraud,
            &p,
            r,
            None
        ));
        assert!(may_decide(
            &user("carol", &["reviewer"], &[]),
            &fraud,
            &p,
            r,
            None
        ));
        // The wrong group, no role, or nobody named.
        assert!(!may_decide(
            &user("dave", &["reviewer"], &["kyc"]),
            &fraud,
            &p,
            r,
            None
        ));
        assert!(!may_decide(
            &user("bob", &[], &["fraud"]),
            &fraud,
            &p,
            r,
            None
        ));
        // Without approvers, only admins review.
        assert!(!may_decide(
            &user("bob", &["reviewer"], &["fraud"]),
            &[],
            &p,
            r,
            None
        ));
    }

    #[test]
    fn the_subject_never_approves_their_own_request_unless_told_to() {
        let p = Parties {
            subject: Some("alice".into()),
            owner: Some("olga".into()),
        };
        let alice = user("alice", &["reviewer"], &["fraud"]);
        let r = Venue::Review;
        assert!(!may_decide(
            &alice,
            &approvers(&["group:fraud"]),
            &p,
            r,
            None
        ));
        assert!(!may_decide(
            &alice,
            &approvers(&["user:alice"]),
            &p,
            r,
            None
        ));
        assert!(!may_decide(
            &alice,
            &approvers(&["subject", "owner"]),
            &p,
            r,
            None
        ));
        assert!(may_decide(&alice, &approvers(&["subject"]), &p, r, None));
        let olga = user("olga", &[], &[]);
        assert!(may_decide(
            &olga,
            &approvers(&["owner"]),
            &p,
            Venue::InteractionPage,
            None
        ));
        assert!(!may_decide(
            &olga,
            &approvers(&["owner"]),
            &p,
            Venue::Review,
            None
        ));
    }

    #[test]
    fn naming_without_the_parties_never_admits_more_than_may_decide() {
        let fraud = approvers(&["group:fraud"]);
        let bob = user("bob", &["reviewer"], &["fraud"]);
        let dave = user("dave", &["reviewer"], &["kyc"]);
        assert!(may_be_named(&bob, &fraud));
        assert!(!may_be_named(&dave, &fraud));
        assert!(may_be_named(&dave, &approvers(&["owner"])));
        // Whenever it says no, may_decide says no for any parties.
        let p = Parties {
            subject: Some("dave".into()),
            owner: Some("dave".into()),
        };
        assert!(!may_decide(&dave, &fraud, &p, Venue::Review, None));
    }

    #[test]
    fn the_page_default_decider_without_approvers() {
        let p = Parties::default();
        let page = Venue::InteractionPage;
        assert!(may_decide(
            &user("alice", &[], &[]),
            &[],
            &p,
            page,
            Some("alice")
        ));
        assert!(!may_decide(
            &user("bob", &[], &[]),
            &[],
            &p,
            page,
            Some("alice")
        ));
        assert!(!may_decide(&user("bob", &[], &[]), &[], &p, page, None));
    }
}
