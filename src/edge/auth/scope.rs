//! The optional `scope` claim of a token: space-separated words naming what the token may do
//! (docs/http.md#scopes). The route → word table is `ROUTE_SCOPES` in `edge/http/routes.rs`,
//! enforced by the `Caller` extractor before a body is read.
//!
//! - No `scope` claim: the token keeps the rights every token had before scopes existed
//!   (messages, reads, audit, close and reset); it has no admin or connectors rights.
//! - A `scope` claim: exactly its words' rights. `messages` posts messages, `read` reads
//!   (sessions, events, state, what-if, usage, event streams), `audit` exports and verifies the
//!   audit trail. Else 403 `scope_required`, naming the word and the route.
//! - `admin` implies every other word (but `connector`); it is required for the admin routes
//!   (`DELETE /api/v1/tenants/{tenant}`, `DELETE /api/v1/sessions/{id}`) and, for a token with
//!   a `scope` claim, for the operator actions (close, reset).
//! - `connectors` (or `admin`) is required by the connector registry's register and list routes;
//!   a token without a `scope` claim does not have it.
//! - `connector` is the scope of a connector token: it stands alone (with any other word the
//!   token is invalid), grants no other word, and the edge lets such a token post messages of its
//!   own team and channel and call its own heartbeat only (`Caller::connector`,
//!   docs/http.md#connector-tokens).
//! - An unknown word, an empty claim or a claim over [`SCOPE_BYTES_MAX`] makes the token
//!   invalid (401 `invalid_token`, naming the word).

use std::fmt;

/// Longest `scope` claim accepted, in bytes (five words fit many times over).
pub const SCOPE_BYTES_MAX: usize = 256;

/// One scope word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `POST /api/v1/messages`.
    Messages,
    /// The session and usage reads.
    Read,
    /// Audit export and verification.
    Audit,
    /// The connector registry: registering and listing connectors.
    Connectors,
    /// The admin routes (tenant deletion).
    Admin,
    /// A connector token: posting messages of its own team and channel, and its own heartbeat;
    /// nothing else. Never combined.
    Connector,
}

impl Scope {
    /// Every word, in the order documented.
    pub const ALL: [Scope; 6] = [
        Scope::Messages,
        Scope::Read,
        Scope::Audit,
        Scope::Connectors,
        Scope::Admin,
        Scope::Connector,
    ];

    /// The word as it appears in the claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Messages => "messages",
            Scope::Read => "read",
            Scope::Audit => "audit",
            Scope::Connectors => "connectors",
            Scope::Admin => "admin",
            Scope::Connector => "connector",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `scope` claim is refused; the message names the word and the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A word that is not one of [`Scope::ALL`].
    #[error(
        "unknown scope {0:?} (accepted: messages, read, audit, connectors, admin, or connector \
         alone)"
    )]
    Unknown(String),
    /// `connector` together with another word: a connector token has that one scope only.
    #[error("the connector scope stands alone (a connector token has no other scope)")]
    ConnectorNotAlone,
    /// The claim is empty or only spaces.
    #[error("the scope claim is empty (omit it for a token with default rights)")]
    Empty,
    /// The claim is longer than [`SCOPE_BYTES_MAX`].
    #[error("the scope claim is longer than {SCOPE_BYTES_MAX} bytes")]
    TooLong,
}

/// The scopes of a token: `None` for a token without a `scope` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Option<Vec<Scope>>);

impl Scopes {
    /// A token without a `scope` claim: today's rights, no admin.
    pub const DEFAULT: Scopes = Scopes(None);

    /// Parses a `scope` claim (space-separated words; repeats are harmless).
    pub fn parse(claim: &str) -> Result<Scopes, ScopeError> {
        if claim.len() > SCOPE_BYTES_MAX {
            return Err(ScopeError::TooLong);
        }
        let mut words = Vec::new();
        for word in claim.split(' ').filter(|w| !w.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| ScopeError::Unknown(word.to_owned()))?;
            if !words.contains(&scope) {
                words.push(scope);
            }
        }
        if words.is_empty() {
            return Err(ScopeError::Empty);
        }
        if words.len() > 1 && words.contains(&Scope::Connector) {
            return Err(ScopeError::ConnectorNotAlone);
        }
        words.sort();
        Ok(Scopes(Some(words)))
    }

    /// Whether the token has `scope`: a claim's words (`admin` implies every word but
    /// [`Scope::Connector`], which is what a connector token is, not a right); without a claim,
    /// every word but [`Scope::Admin`] and [`Scope::Connector`] (the registry's routes also
    /// require a claim, so a token without one is refused there).
    pub fn allows(&self, scope: Scope) -> bool {
        match &self.0 {
            Some(words) if self.is_connector() => scope == Scope::Connector && words.len() == 1,
            Some(words) => {
                words.contains(&scope)
                    || (words.contains(&Scope::Admin) && scope != Scope::Connector)
            }
            None => scope != Scope::Admin && scope != Scope::Connector,
        }
    }

    /// Whether this is a connector token's scope (`connector`, alone).
    pub fn is_connector(&self) -> bool {
        self.0.as_deref() == Some(&[Scope::Connector])
    }

    /// The claim as minted (words in canonical order), `None` without one.
    pub fn claim(&self) -> Option<String> {
        self.0.as_ref().map(|words| {
            words
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_and_admin_is_only_for_admin_tokens() {
        let none = Scopes::DEFAULT;
        assert!(none.allows(Scope::Messages) && !none.allows(Scope::Admin));
        let admin = Scopes::parse("admin").unwrap();
        assert!(admin.allows(Scope::Admin) && admin.allows(Scope::Read));
        let read = Scopes::parse(" read  messages read").unwrap();
        assert!(!read.allows(Scope::Admin));
        assert_eq!(read.claim().as_deref(), Some("messages read"));
        assert_eq!(
            Scopes::parse("read root"),
            Err(ScopeError::Unknown("root".to_owned()))
        );
        assert!(Scopes::parse("Admin").is_err(), "words are case-sensitive");
        assert_eq!(Scopes::parse("  "), Err(ScopeError::Empty));
        assert_eq!(Scopes::parse(&"read ".repeat(60)), Err(ScopeError::TooLong));
    }

    #[test]
    fn connector_stands_alone_and_grants_nothing_else() {
        let connector = Scopes::parse("connector").unwrap();
        assert!(connector.is_connector());
        for scope in Scope::ALL {
            assert_eq!(
                connector.allows(scope),
                scope == Scope::Connector,
                "{scope}"
            );
        }
        assert!(!Scopes::parse("admin").unwrap().allows(Scope::Connector));
        assert!(!Scopes::DEFAULT.allows(Scope::Connector) && !Scopes::DEFAULT.is_connector());
        for mixed in [
            "connector admin",
            "messages connector",
            "connector connectors",
        ] {
            assert_eq!(
                Scopes::parse(mixed),
                Err(ScopeError::ConnectorNotAlone),
                "{mixed}"
            );
        }
        assert!(Scopes::parse("connector connector").unwrap().is_connector());
    }
}
