//! Flows: the YAML programs that answer a team's messages (docs/config.md#flow-files), parsed and validated once.
//!
//! A flow file has a `name`, a `version` (a string) and a list of `nodes`, each
//! `{id, type, config, next?}`. Node types: `reply`, `ask`, `route`, `set`, `end`.
//!
//! Invariants of a loaded [`Flow`]:
//! - It has between 1 and [`NODES_PER_FLOW_MAX`] nodes, with unique ids.
//! - Every node index it holds (`next`, route targets, route defaults) is `< nodes().len()`, so
//!   the runtime can follow them without checking.
//! - Every route regex compiled within [`REGEX_COMPILED_BYTES_MAX`], and every keyword is
//!   non-empty, trimmed and lowercased.
//! - Every template (`reply` and `ask` messages, `set` values) compiled as minijinja, so the
//!   engine meets no syntax errors; it can still fail at run time (an unknown filter, say).
//! - Every error names the flow file, the node (index and id, when known) and what to fix.
//!
//! Keyword routes match case-insensitively when the keyword appears in the input as a whole word
//! or phrase: bounded on both sides by the text's start or end or by a character that is not
//! alphanumeric. So `help` matches `Help!`, `help me` and `I need help`, but not `helpful`.
//! Regex routes match anywhere in the input, case-sensitively unless the pattern says `(?i)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::files::{read_bounded, ReadError};

/// Largest flow file, in bytes; checked while reading, before parsing.
pub const FLOW_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Most nodes in one flow.
pub const NODES_PER_FLOW_MAX: usize = 1024;
/// Most routes (over all `route` nodes) in one flow. With [`REGEX_COMPILED_BYTES_MAX`] this
/// bounds the memory one flow's regexes can take.
pub const ROUTES_PER_FLOW_MAX: usize = 1024;
/// Longest keyword or regex source of a route, in bytes.
pub const ROUTE_PATTERN_BYTES_MAX: usize = 1024;
/// Largest compiled regex, in bytes (`regex::RegexBuilder::size_limit`).
pub const REGEX_COMPILED_BYTES_MAX: usize = 64 * 1024;
/// Largest lazy-DFA cache of one regex, in bytes (`regex::RegexBuilder::dfa_size_limit`).
pub const REGEX_DFA_BYTES_MAX: usize = 256 * 1024;
/// Longest node id, in bytes. Node ids are recorded in events.
pub const NODE_ID_BYTES_MAX: usize = 128;
/// Longest flow name or version, in bytes. Both are recorded in events.
pub const FLOW_LABEL_BYTES_MAX: usize = 128;
/// Longest state key (`ask.key`, `set.key`), in bytes.
pub const STATE_KEY_BYTES_MAX: usize = 64;

/// A flow file that cannot be used. The server must not start with it: show the message (it names
/// the file, the node and what to fix). Retrying without editing the file will not help.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The file is missing, unreadable or larger than [`FLOW_FILE_BYTES_MAX`].
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file is not YAML of the flow shape (unknown field, wrong type, missing `name`, ...).
    /// The parser's message has the line and column.
    #[error("{}: not a valid flow: {source}", path.display())]
    Yaml {
        /// The flow file as resolved.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_yaml_ng::Error,
    },
    /// The YAML parsed but breaks a flow rule (duplicate id, dangling `next`, bad regex, ...).
    #[error("{}: {at}: {problem}", path.display())]
    Invalid {
        /// The flow file as resolved.
        path: PathBuf,
        /// The offending node's id, when the node has one.
        node: Option<String>,
        /// Where in the file, e.g. `nodes[2] (id "pick").config.routes[0].regex`.
        at: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// A validated flow. See the module docs for its invariants.
#[derive(Clone, Debug)]
pub struct Flow {
    name: String,
    version: String,
    source: PathBuf,
    nodes: Vec<Node>,
}

/// One step of a flow.
#[derive(Clone, Debug)]
pub struct Node {
    /// Unique within the flow; recorded in `NodeEntered` events.
    pub id: String,
    /// What the node does.
    pub action: Action,
    /// Index of the node named by `next`, when the node names one. Without it, the node after
    /// this one runs next (see [`Flow::successor`]).
    pub next: Option<usize>,
}

/// What a node does when it runs.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send `message` (a template).
    Reply {
        /// Template of the text to send.
        message: String,
    },
    /// Send `message` (a template), wait for the next input and store it under state key `key`.
    Ask {
        /// Template of the prompt.
        message: String,
        /// State key that receives the next input.
        key: String,
    },
    /// Choose the next node from the input.
    Route(RouteAction),
    /// Set state key `key` to the rendered template `value`.
    Set {
        /// State key to set.
        key: String,
        /// Template of the value.
        value: String,
    },
    /// Close the session.
    End {
        /// Why, recorded in `SessionEnded` when given.
        reason: Option<String>,
    },
}

/// A `route` node: routes are tried in order; the first that matches wins.
#[derive(Clone, Debug)]
pub struct RouteAction {
    /// The routes, in file order.
    pub routes: Vec<Route>,
    /// Index of the node to run when no route matches.
    pub default: Option<usize>,
}

/// One route of a `route` node.
#[derive(Clone, Debug)]
pub struct Route {
    /// How the input is tested.
    pub matcher: RouteMatcher,
    /// Index of the node to run when the matcher matches.
    pub next: usize,
}

/// How a route tests the input. See the module docs for the exact rules.
#[derive(Clone, Debug)]
pub enum RouteMatcher {
    /// A whole word or phrase, compared case-insensitively. Holds the keyword trimmed and
    /// lowercased.
    Keyword(String),
    /// A compiled regex, matched anywhere in the input.
    Regex(regex::Regex),
}

impl Flow {
    /// Reads and validates the flow file at `path` (which is named in every error).
    pub fn load(path: &Path) -> Result<Flow, FlowError> {
        let text = read_bounded(path, FLOW_FILE_BYTES_MAX)?;
        Flow::parse(path, &text)
    }

    /// Validates flow YAML that was read from `path` (used only to name the file in errors).
    pub fn parse(path: &Path, yaml: &str) -> Result<Flow, FlowError> {
        let raw: RawFlow = serde_yaml_ng::from_str(yaml).map_err(|source| FlowError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        Builder { path }.build(raw)
    }

    /// The flow's `name`, recorded in `SessionStarted`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The flow's `version`, recorded in `SessionStarted`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file the flow was loaded from, as resolved.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// All nodes, in file order; never empty.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node at `index`, if there is one.
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes.get(index)
    }

    /// The index of the node with id `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == id)
    }

    /// The node that runs after the one at `index` when it does not choose otherwise: the node
    /// its `next` names, else the following one; `None` when the flow runs past its last node.
    pub fn successor(&self, index: usize) -> Option<usize> {
        let node = self.nodes.get(index)?;
        match node.next {
            Some(next) => Some(next),
            None => Some(index + 1).filter(|&after| after < self.nodes.len()),
        }
    }
}

impl Action {
    /// The node type as written in flow files (`reply`, `ask`, ...), for logs and summaries.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Reply { .. } => "reply",
            Action::Ask { .. } => "ask",
            Action::Route(_) => "route",
            Action::Set { .. } => "set",
            Action::End { .. } => "end",
        }
    }
}

impl RouteAction {
    /// The node to run for `input`: the target of the first matching route, else the default.
    /// `None` when nothing matches and there is no default; the runtime decides what that means.
    pub fn choose(&self, input: &str) -> Option<usize> {
        self.routes
            .iter()
            .find(|route| route.matcher.matches(input))
            .map(|route| route.next)
            .or(self.default)
    }
}

impl RouteMatcher {
    /// Whether `input` matches, by the rules in the module docs.
    pub fn matches(&self, input: &str) -> bool {
        match self {
            RouteMatcher::Keyword(keyword) => keyword_matches(keyword, input),
            RouteMatcher::Regex(regex) => regex.is_match(input),
        }
    }
}

/// `keyword` must already be lowercased. Lowercasing the input once and searching in it keeps the
/// byte offsets consistent even where lowercasing changes a character's length.
fn keyword_matches(keyword: &str, input: &str) -> bool {
    let text = input.to_lowercase();
    text.match_indices(keyword).any(|(start, found)| {
        let before = text[..start].chars().next_back();
        let after = text[start + found.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

// ---- File format ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: String,
    version: String,
    nodes: Vec<RawNode>,
}

/// A node before its `config` is read. `config` stays untyped here so that an unknown type or a
/// bad config can be reported with the node's id, which serde alone would not know.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_yaml_ng::Value,
    #[serde(default)]
    next: Option<String>,
}

/// The node types and their configs, as a serde enum tagged by `type` with content `config`.
#[derive(Deserialize)]
#[serde(
    tag = "type",
    content = "config",
    rename_all = "snake_case",
    deny_unknown_fields
)]
enum RawAction {
    Reply(RawReply),
    Ask(RawAsk),
    Route(RawRoute),
    Set(RawSet),
    End(RawEnd),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReply {
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsk {
    message: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    routes: Vec<RawRouteEntry>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteEntry {
    #[serde(default)]
    keyword: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    next: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    #[serde(default)]
    reason: Option<String>,
}

// ---- Validation -----------------------------------------------------------------------------

/// Turns a parsed file into a [`Flow`], reporting every rule it breaks against `path`.
struct Builder<'a> {
    path: &'a Path,
}

impl Builder<'_> {
    fn build(&self, raw: RawFlow) -> Result<Flow, FlowError> {
        self.check_header(&raw)?;
        let index_of = self.index_ids(&raw.nodes)?;
        let mut routes_total = 0usize;
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for (index, node) in raw.nodes.iter().enumerate() {
            let at = node_at(index, &node.id);
            let target = |field: &str, name: &str| -> Result<usize, FlowError> {
                index_of.get(name).copied().ok_or_else(|| {
                    self.error(
                        Some(&node.id),
                        format!("{at}.{field}"),
                        format!(
                            "no node has id {name:?}; name an existing node (ids: {})",
                            id_list(&raw.nodes)
                        ),
                    )
                })
            };
            let next = node
                .next
                .as_deref()
                .map(|name| target("next", name))
                .transpose()?;
            let action = self.node_action(node, &at, &target, &mut routes_total)?;
            nodes.push(Node {
                id: node.id.clone(),
                action,
                next,
            });
        }

        Ok(Flow {
            name: raw.name,
            version: raw.version,
            source: self.path.to_owned(),
            nodes,
        })
    }

    /// The flow's name, version and node count.
    fn check_header(&self, raw: &RawFlow) -> Result<(), FlowError> {
        check_label(&raw.name).map_err(|problem| self.error(None, "name".to_owned(), problem))?;
        check_label(&raw.version)
            .map_err(|problem| self.error(None, "version".to_owned(), problem))?;
        if raw.nodes.is_empty() {
            return Err(self.error(
                None,
                "nodes".to_owned(),
                "the flow has no nodes; add at least one (e.g. a `reply`)".to_owned(),
            ));
        }
        if raw.nodes.len() > NODES_PER_FLOW_MAX {
            return Err(self.error(
                None,
                "nodes".to_owned(),
                format!(
                    "the flow has {} nodes, more than the limit of {NODES_PER_FLOW_MAX}; split it",
                    raw.nodes.len()
                ),
            ));
        }
        Ok(())
    }

    /// Every node id checked and unique, with its index: done first, so that targets can be
    /// checked whatever order the nodes come in.
    fn index_ids<'n>(
        &self,
        raw_nodes: &'n [RawNode],
    ) -> Result<HashMap<&'n str, usize>, FlowError> {
        let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(raw_nodes.len());
        for (index, node) in raw_nodes.iter().enumerate() {
            let at = node_at(index, &node.id);
            check_node_id(&node.id).map_err(|problem| {
                self.error(Some(&node.id), format!("nodes[{index}].id"), problem)
            })?;
            if let Some(first) = index_of.insert(&node.id, index) {
                return Err(self.error(
                    Some(&node.id),
                    at,
                    format!(
                        "duplicate node id {:?}: nodes[{first}] has it too; node ids must be unique",
                        node.id
                    ),
                ));
            }
        }

        Ok(index_of)
    }

    /// The node's action, its templates, keys, regexes and targets checked; `routes_total`
    /// counts the flow's routes so far.
    fn node_action(
        &self,
        node: &RawNode,
        at: &str,
        target: &dyn Fn(&str, &str) -> Result<usize, FlowError>,
        routes_total: &mut usize,
    ) -> Result<Action, FlowError> {
        let action = match self.action(node, at)? {
            RawAction::Reply(RawReply { message }) => {
                self.template(node, &format!("{at}.config.message"), &message)?;
                Action::Reply { message }
            }
            RawAction::Ask(RawAsk { message, key }) => {
                self.state_key(node, at, &key)?;
                self.template(node, &format!("{at}.config.message"), &message)?;
                Action::Ask { message, key }
            }
            RawAction::Set(RawSet { key, value }) => {
                self.state_key(node, at, &key)?;
                self.template(node, &format!("{at}.config.value"), &value)?;
                Action::Set { key, value }
            }
            RawAction::End(RawEnd { reason }) => Action::End { reason },
            RawAction::Route(route) => self.route_action(node, at, route, target, routes_total)?,
        };
        Ok(action)
    }

    /// A route node's matchers and targets, within the flow's route budget.
    fn route_action(
        &self,
        node: &RawNode,
        at: &str,
        route: RawRoute,
        target: &dyn Fn(&str, &str) -> Result<usize, FlowError>,
        routes_total: &mut usize,
    ) -> Result<Action, FlowError> {
        *routes_total = routes_total.saturating_add(route.routes.len());
        if *routes_total > ROUTES_PER_FLOW_MAX {
            return Err(self.error(
                Some(&node.id),
                format!("{at}.config.routes"),
                format!(
                    "the flow has more than {ROUTES_PER_FLOW_MAX} routes in all; \
                     split it"
                ),
            ));
        }
        if route.routes.is_empty() && route.default.is_none() {
            return Err(self.error(
                Some(&node.id),
                format!("{at}.config.routes"),
                "a route node needs at least one route or a `default`".to_owned(),
            ));
        }
        let mut routes = Vec::with_capacity(route.routes.len());
        for (route_index, entry) in route.routes.into_iter().enumerate() {
            let field = format!("config.routes[{route_index}]");
            let matcher =
                self.matcher(node, &format!("{at}.{field}"), entry.keyword, entry.regex)?;
            let next = target(&format!("{field}.next"), &entry.next)?;
            routes.push(Route { matcher, next });
        }
        let default = route
            .default
            .as_deref()
            .map(|name| target("config.default", name))
            .transpose()?;
        Ok(Action::Route(RouteAction { routes, default }))
    }

    /// The node's `config.key`: a valid state key.
    fn state_key(&self, node: &RawNode, at: &str, key: &str) -> Result<(), FlowError> {
        check_state_key(key)
            .map_err(|problem| self.error(Some(&node.id), format!("{at}.config.key"), problem))
    }

    /// Reads the node's `type` and `config` through [`RawAction`].
    fn action(&self, node: &RawNode, at: &str) -> Result<RawAction, FlowError> {
        // A missing or empty `config` reads as `{}`: `end` needs nothing, and the other types
        // then report exactly which field is missing.
        let config = match &node.config {
            serde_yaml_ng::Value::Null => {
                serde_yaml_ng::Value::Mapping(serde_yaml_ng::Mapping::new())
            }
            other => other.clone(),
        };
        let mut tagged = serde_yaml_ng::Mapping::new();
        tagged.insert(
            "type".into(),
            serde_yaml_ng::Value::String(node.kind.clone()),
        );
        tagged.insert("config".into(), config);
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(tagged)).map_err(|source| {
            let problem = if KNOWN_TYPES.contains(&node.kind.as_str()) {
                format!("invalid `{}` config: {source}", node.kind)
            } else {
                format!(
                    "unknown node type {:?}; use one of: {}",
                    node.kind,
                    KNOWN_TYPES.join(", ")
                )
            };
            self.error(Some(&node.id), at.to_owned(), problem)
        })
    }

    fn matcher(
        &self,
        node: &RawNode,
        at: &str,
        keyword: Option<String>,
        regex: Option<String>,
    ) -> Result<RouteMatcher, FlowError> {
        let error = |field: &str, problem: String| {
            self.error(Some(&node.id), format!("{at}{field}"), problem)
        };
        match (keyword, regex) {
            (Some(_), Some(_)) => Err(error(
                "",
                "a route has both `keyword` and `regex`; give exactly one".to_owned(),
            )),
            (None, None) => Err(error(
                "",
                "a route has neither `keyword` nor `regex`; give exactly one".to_owned(),
            )),
            (Some(keyword), None) => {
                let keyword = keyword.trim();
                if keyword.is_empty() {
                    return Err(error(
                        ".keyword",
                        "the keyword is empty; give a word".to_owned(),
                    ));
                }
                if keyword.len() > ROUTE_PATTERN_BYTES_MAX {
                    return Err(error(
                        ".keyword",
                        format!("the keyword is longer than {ROUTE_PATTERN_BYTES_MAX} bytes"),
                    ));
                }
                Ok(RouteMatcher::Keyword(keyword.to_lowercase()))
            }
            (None, Some(pattern)) => {
                if pattern.is_empty() {
                    return Err(error(
                        ".regex",
                        "the regex is empty (it would match everything); use `default` instead"
                            .to_owned(),
                    ));
                }
                if pattern.len() > ROUTE_PATTERN_BYTES_MAX {
                    return Err(error(
                        ".regex",
                        format!("the regex is longer than {ROUTE_PATTERN_BYTES_MAX} bytes"),
                    ));
                }
                regex::RegexBuilder::new(&pattern)
                    .size_limit(REGEX_COMPILED_BYTES_MAX)
                    .dfa_size_limit(REGEX_DFA_BYTES_MAX)
                    .build()
                    .map(RouteMatcher::Regex)
                    .map_err(|source| {
                        error(".regex", format!("invalid regex {pattern:?}: {source}"))
                    })
            }
        }
    }

    /// Compiles the template `source` once, so that a syntax error stops the load instead of
    /// failing every message that reaches the node. Syntax does not depend on the settings the
    /// flow engine renders with (escaping, fuel, undefined values), so a default environment
    /// parses it exactly as the engine will.
    fn template(&self, node: &RawNode, at: &str, source: &str) -> Result<(), FlowError> {
        let env = minijinja::Environment::new();
        env.template_from_str(source).map(drop).map_err(|source| {
            let line = source
                .line()
                .map_or(String::new(), |line| format!(" on line {line}"));
            let detail = source.detail().unwrap_or("no detail");
            self.error(
                Some(&node.id),
                at.to_owned(),
                format!("invalid template{line}: {}: {detail}", source.kind()),
            )
        })
    }

    fn error(&self, node: Option<&str>, at: String, problem: String) -> FlowError {
        FlowError::Invalid {
            path: self.path.to_owned(),
            node: node.map(str::to_owned),
            at,
            problem,
        }
    }
}

/// The node types, in the order error messages list them.
const KNOWN_TYPES: [&str; 5] = ["reply", "ask", "route", "set", "end"];

fn node_at(index: usize, id: &str) -> String {
    format!("nodes[{index}] (id {id:?})")
}

/// The ids of all nodes, shortened so that an error about a huge flow stays readable.
fn id_list(nodes: &[RawNode]) -> String {
    const SHOWN_MAX: usize = 10;
    let mut shown: Vec<String> = nodes
        .iter()
        .take(SHOWN_MAX)
        .map(|node| format!("{:?}", node.id))
        .collect();
    if nodes.len() > SHOWN_MAX {
        shown.push(format!("... {} more", nodes.len() - SHOWN_MAX));
    }
    shown.join(", ")
}

fn check_label(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > FLOW_LABEL_BYTES_MAX {
        return Err(format!("must be at most {FLOW_LABEL_BYTES_MAX} bytes"));
    }
    Ok(())
}

/// Node ids: 1-128 chars of `[A-Za-z0-9_-]`, so they read well in events, logs and errors.
fn check_node_id(id: &str) -> Result<(), String> {
    let ok = (1..=NODE_ID_BYTES_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid node id {id:?}: use 1-{NODE_ID_BYTES_MAX} chars of letters, digits, `_` and `-`"
        ))
    }
}

/// State keys: identifiers (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes), so that templates can
/// name them as `state.<key>` without quoting.
fn check_state_key(key: &str) -> Result<(), String> {
    let bytes = key.as_bytes();
    let ok = (1..=STATE_KEY_BYTES_MAX).contains(&bytes.len())
        && bytes
            .first()
            .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid state key {key:?}: use a letter or `_` followed by letters, digits or `_`, \
             at most {STATE_KEY_BYTES_MAX} bytes"
        ))
    }
}

#[cfg(test)]
mod tests;
