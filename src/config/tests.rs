//! Tests of config loading: the shipped config, the seed files as they are, modes, merging, and
//! that every error names its file, its field and the fix.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::ConfigError;
use super::flow::{Action, Flow, FlowError, RouteMatcher, NODES_PER_FLOW_MAX};
use super::{Config, LoadOptions};
use crate::tenancy::fixtures::channel;
use crate::tenancy::fixtures::team;
use crate::tenancy::fixtures::tenant;
use crate::tenancy::{EnvId, TeamId, TenantId};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn seed(name: &str) -> PathBuf {
    repo("tests/data/seed").join(name)
}

/// A TOML basic string holding `path`, so that tests can name absolute seed paths.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

const REPLY_FLOW: &str = r#"name: f
version: "1"
nodes:
  - id: greet
    type: reply
    config:
      message: hi
"#;

/// A temp dir holding `files` (relative path -> contents); `config.toml` is among them.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for (name, text) in files {
            fixture.write(name, text);
        }
        fixture
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config(), &LoadOptions::default())
    }

    fn load_as(&self, tenant: &str) -> Result<Config, ConfigError> {
        let opts = LoadOptions {
            tenant_override: Some(tenant.to_owned()),
        };
        Config::load(&self.config(), &opts)
    }

    /// Loads, expecting an error; returns its message.
    fn error(&self) -> String {
        match self.load() {
            Ok(config) => panic!("expected an error, got:\n{}", config.summary()),
            Err(err) => err.to_string(),
        }
    }
}

/// Asserts that `text` contains every one of `parts`.
#[track_caller]
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{text:?}\n  should mention {part:?}");
    }
}

/// Two tenants with one team each, both using `flows/f.yaml`.
fn two_tenants(server: &str) -> Fixture {
    let config = format!(
        "[server]\n{server}\n\
         [tenants.acme.teams.support]\nflow = \"flows/f.yaml\"\n\
         [tenants.bigcorp.teams.helpdesk]\nflow = \"flows/f.yaml\"\n"
    );
    Fixture::new(&[("config.toml", &config), ("flows/f.yaml", REPLY_FLOW)])
}

// ---- The shipped files --------------------------------------------------------------------

#[test]
fn shipped_config_loads_with_the_expected_tenants_teams_and_flows() {
    let config = Config::load(&repo("config.toml"), &LoadOptions::default()).unwrap();

    assert_eq!(config.server().listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server().data_dir, repo("data"));
    assert!(config.nats().is_none());
    assert_eq!(config.auth().issuer, "tenantry");
    assert_eq!(config.auth().audience, "tenantry-api");
    assert_eq!(*config.log(), super::LogConfig::default());
    assert!(config.cluster().is_none());
    assert_eq!(
        config.runtime().session_idle_timeout,
        Duration::from_secs(600)
    );
    assert_eq!(config.runtime().snapshot_every, 100);
    assert_eq!(config.dedicated(), None);
    assert!(config.excluded().is_empty());

    let ids: Vec<&str> = config.tenants().keys().map(TenantId::as_str).collect();
    assert_eq!(ids, ["acme", "bigcorp"]);

    let acme = config.tenant(&tenant("acme")).unwrap();
    assert_eq!(acme.name, "ACME Corporation");
    assert_eq!(acme.settings["timezone"], "America/New_York");
    assert_eq!(acme.settings["language"], "en-US");
    let envs: Vec<&str> = acme
        .environments
        .iter()
        .map(|env| env.id.as_str())
        .collect();
    assert_eq!(envs, ["prod", "staging"]);
    assert!(acme.env(&EnvId::parse("prod").unwrap()).is_some());
    assert!(acme.env(&EnvId::default_env()).is_none());
    let teams: Vec<&str> = acme.teams.keys().map(TeamId::as_str).collect();
    assert_eq!(teams, ["sales", "support"]);
    let support = &acme.teams[&team("support")];
    assert_eq!(support.name, "Customer Support");
    assert_eq!(
        support.channels[&channel("slack")].provider,
        "messaging-slack"
    );
    assert_eq!(
        support.channels[&channel("slack")].config["workspace_id"],
        "T123456"
    );
    assert_eq!(
        support.channels[&channel("slack")].config["channel_id"],
        "C789012"
    );
    assert_eq!(
        support.channels[&channel("telegram")].provider,
        "messaging-telegram"
    );
    assert_eq!(
        acme.teams[&team("sales")].channels[&channel("teams")].provider,
        "messaging-teams"
    );

    let support_flow = config.flow_for(&tenant("acme"), &team("support")).unwrap();
    let sales_flow = config.flow_for(&tenant("acme"), &team("sales")).unwrap();
    assert_eq!(support_flow.name(), "acme_support_flow");
    assert_eq!(support_flow.version(), "1.0");
    assert!(
        Arc::ptr_eq(support_flow, sales_flow),
        "one flow file is loaded once"
    );

    let bigcorp = config.tenant(&tenant("bigcorp")).unwrap();
    assert_eq!(bigcorp.name, "BigCorp Inc.");
    assert_eq!(bigcorp.environments.len(), 2);
    assert_eq!(
        bigcorp.teams[&team("helpdesk")].channels[&channel("webchat")].provider,
        "messaging-webchat"
    );
    let helpdesk = config
        .flow_for(&tenant("bigcorp"), &team("helpdesk"))
        .unwrap();
    assert_eq!(helpdesk.name(), "bigcorp_helpdesk_flow");
    assert!(config
        .flow_for(&tenant("bigcorp"), &team("support"))
        .is_none());
    assert!(config
        .flow_for(&tenant("nobody"), &team("support"))
        .is_none());
}

#[test]
fn shipped_flows_are_the_seed_flows_byte_for_byte() {
    for (shipped, seed_name) in [
        ("flows/acme_support.yaml", "acme_support_flow.yaml"),
        ("flows/bigcorp_helpdesk.yaml", "bigcorp_helpdesk_flow.yaml"),
    ] {
        assert_eq!(
            fs::read(repo(shipped)).unwrap(),
            fs::read(seed(seed_name)).unwrap(),
            "{shipped}"
        );
    }
}

#[test]
fn summary_of_shipped_config_lists_mode_counts_tenants_teams_and_flows() {
    let config = Config::load(&repo("config.toml"), &LoadOptions::default()).unwrap();
    let summary = config.summary();
    assert_mentions(
        &summary,
        &[
            "mode: shared",
            "listen: 127.0.0.1:8080",
            "nats: off",
            "log: sled\n",
            "2 tenants, 4 envs, 3 teams, 4 channels, 2 flows",
            "tenant acme: \"ACME Corporation\"",
            "envs: prod, staging",
            "team support: \"Customer Support\"",
            "flow: acme_support_flow v1.0 (",
            "acme_support.yaml",
            "channels: slack: messaging-slack, telegram: messaging-telegram",
            "tenant bigcorp: \"BigCorp Inc.\"",
            "channels: webchat: messaging-webchat",
        ],
    );
    assert!(
        !summary.contains("T123456"),
        "channel config values are not printed"
    );

    let dedicated = Config::load(
        &repo("config.toml"),
        &LoadOptions {
            tenant_override: Some("bigcorp".to_owned()),
        },
    )
    .unwrap();
    assert_mentions(
        &dedicated.summary(),
        &[
            "mode: dedicated: bigcorp",
            "1 tenants, 2 envs, 1 teams, 1 channels, 1 flows",
        ],
    );
}

// ---- The seed files, as they are ----------------------------------------------------------

#[test]
fn seed_flows_load_as_they_are() {
    for (file, name, message) in [
        (
            "acme_support_flow.yaml",
            "acme_support_flow",
            "Welcome to ACME Support! How can I help?",
        ),
        (
            "bigcorp_helpdesk_flow.yaml",
            "bigcorp_helpdesk_flow",
            "BigCorp Helpdesk here. What's your issue?",
        ),
    ] {
        let flow = Flow::load(&seed(file)).unwrap();
        assert_eq!(flow.name(), name);
        assert_eq!(flow.version(), "1.0");
        assert_eq!(flow.nodes().len(), 1);
        assert_eq!(flow.nodes()[0].id, "greet");
        assert!(matches!(&flow.nodes()[0].action, Action::Reply { message: m } if m == message));
        assert_eq!(flow.successor(0), None, "a one-node flow runs past its end");
    }
}

#[test]
fn seed_bundle_merges_into_tenants_and_toml_fields_win() {
    let config = format!(
        "[server]\nbundle = {}\n\
         [tenants.acme]\nname = \"ACME from TOML\"\nflow = {}\nenvironments = [\"prod\"]\n\
         [tenants.bigcorp]\nflow = {}\n",
        toml_path(&seed("bundle.yaml")),
        toml_path(&seed("acme_support_flow.yaml")),
        toml_path(&seed("bigcorp_helpdesk_flow.yaml")),
    );
    let fixture = Fixture::new(&[("config.toml", &config)]);
    let config = fixture.load().unwrap();

    let acme = config.tenant(&tenant("acme")).unwrap();
    assert_eq!(
        acme.name, "ACME from TOML",
        "TOML fields win over the bundle"
    );
    assert_eq!(acme.environments.len(), 1);
    let teams: Vec<&str> = acme.teams.keys().map(TeamId::as_str).collect();
    assert_eq!(teams, ["sales", "support"]);
    assert_eq!(acme.teams[&team("sales")].name, "Sales Team");
    let support = &acme.teams[&team("support")];
    let providers: Vec<&str> = support
        .channels
        .values()
        .map(|c| c.provider.as_str())
        .collect();
    assert_eq!(providers, ["messaging-slack", "messaging-telegram"]);
    assert_eq!(
        support.flow.name(),
        "acme_support_flow",
        "a team without a flow inherits the tenant's"
    );

    let bigcorp = config.tenant(&tenant("bigcorp")).unwrap();
    assert_eq!(
        bigcorp.name, "BigCorp Inc.",
        "fields the TOML leaves out come from the bundle"
    );
    assert_eq!(
        bigcorp.environments[0].id,
        EnvId::default_env(),
        "no environments means [default]"
    );
    let helpdesk = &bigcorp.teams[&team("helpdesk")];
    assert_eq!(
        helpdesk.name, "helpdesk",
        "a team without a name is shown by its id"
    );
    assert_eq!(
        helpdesk.channels[&channel("webchat")].provider,
        "messaging-webchat"
    );
    assert_eq!(helpdesk.flow.name(), "bigcorp_helpdesk_flow");
}

#[test]
fn seed_tenant_and_team_files_load_as_they_are() {
    let config = format!(
        "[server]\ntenant_files = [{}]\nteam_files = [{}]\n[tenants.acme]\nflow = {}\n",
        toml_path(&seed("tenant.yaml")),
        toml_path(&seed("team.yaml")),
        toml_path(&seed("acme_support_flow.yaml")),
    );
    let fixture = Fixture::new(&[("config.toml", &config)]);
    let config = fixture.load().unwrap();

    let acme = config.tenant(&tenant("acme")).unwrap();
    assert_eq!(acme.name, "ACME Corporation");
    assert_eq!(acme.settings["timezone"], "America/New_York");
    assert_eq!(acme.settings["language"], "en-US");
    let envs: Vec<(&str, Option<&str>)> = acme
        .environments
        .iter()
        .map(|env| (env.id.as_str(), env.name.as_deref()))
        .collect();
    assert_eq!(
        envs,
        [("prod", Some("Production")), ("staging", Some("Staging"))]
    );
    let support = &acme.teams[&team("support")];
    assert_eq!(support.name, "Customer Support");
    assert_eq!(
        support.channels[&channel("slack")].config["workspace_id"],
        "T123456"
    );
    assert_eq!(
        support.channels[&channel("telegram")].config["chat_id"],
        "-1001234567890"
    );
    assert_eq!(support.flow.name(), "acme_support_flow");
}

#[test]
fn team_without_any_flow_is_an_error_naming_the_field() {
    // The seeds define no flows: loading them alone must say which field to set.
    let config = format!(
        "[server]\ntenant_files = [{}]\nteam_files = [{}]\n",
        toml_path(&seed("tenant.yaml")),
        toml_path(&seed("team.yaml")),
    );
    let fixture = Fixture::new(&[("config.toml", &config)]);
    let err = fixture.error();
    assert_mentions(
        &err,
        &[
            "team.yaml",
            "tenants.acme.teams.support.flow",
            "tenants.acme.flow",
        ],
    );

    let fixture = Fixture::new(&[(
        "config.toml",
        "[tenants.acme.teams.support]\nname = \"S\"\n",
    )]);
    let err = fixture.error();
    assert_mentions(&err, &["config.toml", "tenants.acme.teams.support.flow"]);
}

#[test]
fn team_file_for_an_unconfigured_tenant_is_an_error() {
    let config = format!(
        "[server]\nteam_files = [{}]\n[tenants.other.teams.x]\nflow = \"flows/f.yaml\"\n",
        toml_path(&seed("team.yaml"))
    );
    let fixture = Fixture::new(&[("config.toml", &config), ("flows/f.yaml", REPLY_FLOW)]);
    assert_mentions(
        &fixture.error(),
        &["team.yaml", "team.tenant_id", "`acme` is not configured"],
    );
}

#[test]
fn team_defined_twice_is_an_error_naming_both_files() {
    let config = format!(
        "[server]\nbundle = {}\n[tenants.acme]\nflow = \"flows/f.yaml\"\n\
         [tenants.acme.teams.support]\nname = \"Also support\"\n",
        toml_path(&seed("bundle.yaml"))
    );
    let fixture = Fixture::new(&[("config.toml", &config), ("flows/f.yaml", REPLY_FLOW)]);
    let err = fixture.error();
    assert_mentions(
        &err,
        &[
            "support",
            "acme",
            "config.toml",
            "bundle.yaml",
            "defined twice",
        ],
    );
}

#[test]
fn tenant_defined_by_two_tenant_files_is_an_error() {
    let config = format!(
        "[server]\ntenant_files = [{0}, \"again.yaml\"]\n",
        toml_path(&seed("tenant.yaml"))
    );
    let fixture = Fixture::new(&[
        ("config.toml", &config),
        (
            "again.yaml",
            &fs::read_to_string(seed("tenant.yaml")).unwrap(),
        ),
    ]);
    assert_mentions(&fixture.error(), &["tenant.yaml", "again.yaml", "acme"]);
}

// ---- Modes --------------------------------------------------------------------------------

#[test]
fn dedicated_mode_keeps_only_that_tenant() {
    let fixture = two_tenants("tenant = \"acme\"");
    let config = fixture.load().unwrap();
    assert_eq!(config.dedicated(), Some(&tenant("acme")));
    let ids: Vec<&str> = config.tenants().keys().map(TenantId::as_str).collect();
    assert_eq!(ids, ["acme"]);
    assert!(config
        .flow_for(&tenant("bigcorp"), &team("helpdesk"))
        .is_none());
}

#[test]
fn tenant_override_wins_over_server_tenant() {
    let fixture = two_tenants("tenant = \"acme\"");
    let config = fixture.load_as("bigcorp").unwrap();
    assert_eq!(config.dedicated(), Some(&tenant("bigcorp")));
    let ids: Vec<&str> = config.tenants().keys().map(TenantId::as_str).collect();
    assert_eq!(ids, ["bigcorp"]);
}

#[test]
fn unknown_dedicated_tenant_is_an_error() {
    let fixture = two_tenants("tenant = \"nobody\"");
    assert_mentions(
        &fixture.error(),
        &["config.toml", "server.tenant", "`nobody`", "acme, bigcorp"],
    );

    let fixture = two_tenants("");
    let err = fixture.load_as("nobody").unwrap_err().to_string();
    assert_mentions(&err, &["config.toml", "TENANTRY_TENANT_ID", "`nobody`"]);

    let err = fixture.load_as("Not Valid").unwrap_err();
    assert!(
        matches!(err, ConfigError::InvalidTenantOverride { .. }),
        "{err}"
    );
    assert_mentions(
        &err.to_string(),
        &["TENANTRY_TENANT_ID", "invalid tenant id"],
    );
}

#[test]
fn dedicated_mode_does_not_load_other_tenants_flows() {
    let config = "[server]\ntenant = \"acme\"\n\
                  [tenants.acme.teams.support]\nflow = \"flows/f.yaml\"\n\
                  [tenants.bigcorp.teams.helpdesk]\nflow = \"flows/missing.yaml\"\n";
    let fixture = Fixture::new(&[("config.toml", config), ("flows/f.yaml", REPLY_FLOW)]);
    assert!(fixture.load().is_ok());
    assert_mentions(
        &fixture.load_as("bigcorp").unwrap_err().to_string(),
        &["missing.yaml"],
    );
}

#[test]
fn exclude_tenants_removes_them() {
    let fixture = two_tenants("exclude_tenants = [\"bigcorp\"]");
    let config = fixture.load().unwrap();
    assert_eq!(config.excluded(), [tenant("bigcorp")]);
    let ids: Vec<&str> = config.tenants().keys().map(TenantId::as_str).collect();
    assert_eq!(ids, ["acme"]);
    assert_mentions(&config.summary(), &["mode: shared, excluding bigcorp"]);
}

#[test]
fn exclude_tenants_errors() {
    let err = two_tenants("tenant = \"acme\"\nexclude_tenants = [\"acme\"]").error();
    assert_mentions(
        &err,
        &[
            "config.toml",
            "server.exclude_tenants[0]",
            "dedicated",
            "server.tenant",
        ],
    );

    let err = two_tenants("exclude_tenants = [\"acme\"]")
        .load_as("acme")
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["server.exclude_tenants[0]", "TENANTRY_TENANT_ID"]);

    let err = two_tenants("exclude_tenants = [\"acmee\"]").error();
    assert_mentions(
        &err,
        &["server.exclude_tenants[0]", "`acmee` is not configured"],
    );

    let err = two_tenants("exclude_tenants = [\"acme\", \"bigcorp\"]").error();
    assert_mentions(&err, &["server.exclude_tenants", "none to serve"]);
}

// ---- Shape errors -------------------------------------------------------------------------

#[test]
fn misspelled_fields_are_errors_naming_the_file_and_field() {
    for (config, typo) in [
        ("[server]\nlsten = \"127.0.0.1:1\"\n", "lsten"),
        ("[runtime]\nsnapshot_evry = 3\n", "snapshot_evry"),
        ("[tenants.acme]\nnmae = \"A\"\n", "nmae"),
        (
            "[tenants.acme.teams.support.channels.slack]\nprovder = \"x\"\n",
            "provder",
        ),
        ("[nat]\nurl = \"nats://x\"\n", "nat"),
        ("[log]\nbackendd = \"sled\"\n", "backendd"),
        ("[cluster]\nnod = \"n1\"\n", "nod"),
    ] {
        let err = Fixture::new(&[("config.toml", config)]).error();
        assert_mentions(&err, &["config.toml", typo, "line"]);
    }

    let fixture = Fixture::new(&[
        ("config.toml", "[server]\nbundle = \"b.yaml\"\n"),
        (
            "b.yaml",
            "tenants:\n  acme:\n    teams:\n      t:\n        flw: f.yaml\n",
        ),
    ]);
    assert_mentions(&fixture.error(), &["b.yaml", "flw", "line"]);
}

#[test]
fn invalid_ids_are_errors_naming_the_file() {
    let err = Fixture::new(&[("config.toml", "[tenants.ACME]\nname = \"A\"\n")]).error();
    assert_mentions(
        &err,
        &["config.toml", "invalid tenant id", "\"ACME\"", "line"],
    );

    let err = Fixture::new(&[("config.toml", "[tenants.acme.teams.\"Sup port\"]\n")]).error();
    assert_mentions(&err, &["config.toml", "invalid team id"]);

    let err =
        Fixture::new(&[("config.toml", "[tenants.acme]\nenvironments = [\"Prod\"]\n")]).error();
    assert_mentions(&err, &["config.toml", "invalid env id"]);

    let fixture = Fixture::new(&[
        ("config.toml", "[server]\nbundle = \"b.yaml\"\n"),
        ("b.yaml", "tenants:\n  acme:\n    teams:\n      t:\n        channels:\n          Slack.x:\n            provider: p\n"),
    ]);
    assert_mentions(&fixture.error(), &["b.yaml", "invalid channel id"]);
}

#[test]
fn value_rules_are_errors_naming_the_field() {
    let cases = [
        ("[runtime]\nsnapshot_every = 0\n", "runtime.snapshot_every"),
        (
            "[runtime]\nsession_idle_timeout = \"0s\"\n",
            "runtime.session_idle_timeout",
        ),
        (
            "[runtime]\nsession_idle_timeout = \"10 parsecs\"\n",
            "runtime.session_idle_timeout",
        ),
        (
            "[runtime]\nsession_idle_timeout = \"400days\"\n",
            "runtime.session_idle_timeout",
        ),
        (
            "[nats]\nurl = \"nats://x:4222\"\nsubject_prefix = \"a.*\"\n",
            "nats.subject_prefix",
        ),
        (
            "[nats]\nurl = \"nats://x:4222\"\nsubject_prefix = \"a..b\"\n",
            "nats.subject_prefix",
        ),
        ("[nats]\nurl = \"\"\n", "nats.url"),
        ("[auth]\nissuer = \" \"\n", "auth.issuer"),
        ("[server]\nlisten = \"localhost\"\n", "listen"),
        ("[server]\ndata_dir = \"\"\n", "server.data_dir"),
        (
            "[tenants.acme]\nenvironments = []\n",
            "tenants.acme.environments",
        ),
        (
            "[tenants.acme]\nenvironments = [\"prod\", \"prod\"]\n",
            "tenants.acme.environments",
        ),
        ("[tenants.acme]\nname = \"\"\n", "tenants.acme.name"),
        (
            "[tenants.acme.teams.s]\nflow = \"\"\n",
            "tenants.acme.teams.s.flow",
        ),
        (
            "[tenants.acme.teams.s.channels.c]\nprovider = \"\"\n",
            "tenants.acme.teams.s.channels.c.provider",
        ),
        ("[server]\n", "no tenants are configured"),
    ];
    for (config, field) in cases {
        let err = Fixture::new(&[("config.toml", config)]).error();
        assert_mentions(&err, &["config.toml", field]);
    }
}

#[test]
fn defaults_apply_when_sections_are_absent() {
    let fixture = Fixture::new(&[
        (
            "config.toml",
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[tenants.acme.teams.s]\nflow = \"f.yaml\"\n",
        ),
        ("f.yaml", REPLY_FLOW),
    ]);
    let config = fixture.load().unwrap();
    assert_eq!(config.server().listen, super::DEFAULT_LISTEN);
    assert_eq!(config.server().data_dir, fixture.path("data"));
    assert_eq!(config.nats().unwrap().subject_prefix, "greentic.messaging");
    assert_eq!(
        config.runtime().session_idle_timeout,
        Duration::from_secs(600)
    );
    assert_eq!(config.runtime().snapshot_every, 100);
    let acme = config.tenant(&tenant("acme")).unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.environments.len(), 1);
    assert_eq!(acme.environments[0].id, EnvId::default_env());
    assert_mentions(&config.summary(), &["nats: on (nats://127.0.0.1:4222"]);
}

// ---- Files and paths ----------------------------------------------------------------------

#[test]
fn relative_paths_resolve_against_the_file_that_names_them() {
    let fixture = Fixture::new(&[
        (
            "etc/config.toml",
            "[server]\ndata_dir = \"state\"\nbundle = \"seeds/bundle.yaml\"\n\
             [tenants.acme]\nflow = \"./flows/../flows/a.yaml\"\n\
             [tenants.acme.teams.one]\nflow = \"flows/a.yaml\"\n",
        ),
        ("etc/flows/a.yaml", REPLY_FLOW),
        // Relative to the bundle's directory, not the config's.
        (
            "etc/seeds/bundle.yaml",
            "tenants:\n  acme:\n    teams:\n      two:\n        flow: flows/b.yaml\n",
        ),
        (
            "etc/seeds/flows/b.yaml",
            &REPLY_FLOW.replace("name: f", "name: b"),
        ),
    ]);
    let config = Config::load(&fixture.path("etc/config.toml"), &LoadOptions::default()).unwrap();
    assert_eq!(config.server().data_dir, fixture.path("etc/state"));
    let one = config.flow_for(&tenant("acme"), &team("one")).unwrap();
    assert_eq!(one.source(), fixture.path("etc/flows/a.yaml"));
    let two = config.flow_for(&tenant("acme"), &team("two")).unwrap();
    assert_eq!(two.name(), "b");
    assert_eq!(two.source(), fixture.path("etc/seeds/flows/b.yaml"));
}

#[test]
fn one_flow_file_named_twice_is_loaded_once() {
    let fixture = Fixture::new(&[
        (
            "config.toml",
            "[tenants.acme.teams.one]\nflow = \"flows/a.yaml\"\n\
             [tenants.acme.teams.two]\nflow = \"./flows/a.yaml\"\n\
             [tenants.bigcorp]\nflow = \"flows/./a.yaml\"\n[tenants.bigcorp.teams.three]\n",
        ),
        ("flows/a.yaml", REPLY_FLOW),
    ]);
    let config = fixture.load().unwrap();
    let one = config.flow_for(&tenant("acme"), &team("one")).unwrap();
    let two = config.flow_for(&tenant("acme"), &team("two")).unwrap();
    let three = config.flow_for(&tenant("bigcorp"), &team("three")).unwrap();
    assert!(Arc::ptr_eq(one, two));
    assert!(Arc::ptr_eq(one, three));
    assert_mentions(
        &config.summary(),
        &["2 tenants, 2 envs, 3 teams, 0 channels, 1 flows"],
    );
}

#[test]
fn missing_files_are_errors_naming_the_path() {
    let missing = repo("tests/data/no-such-config.toml");
    let err = Config::load(&missing, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["no-such-config.toml", "cannot read"]);

    let err = Fixture::new(&[("config.toml", "[server]\nbundle = \"nope/bundle.yaml\"\n")]).error();
    assert_mentions(&err, &["nope/bundle.yaml", "cannot read"]);

    let err = Fixture::new(&[("config.toml", "[server]\nteam_files = [\"t.yaml\"]\n")]).error();
    assert_mentions(&err, &["t.yaml", "cannot read"]);

    let err = Fixture::new(&[(
        "config.toml",
        "[tenants.acme.teams.s]\nflow = \"flows/gone.yaml\"\n",
    )])
    .error();
    assert_mentions(
        &err,
        &[
            "config.toml",
            "tenants.acme.teams.s.flow",
            "flows/gone.yaml",
            "cannot read",
        ],
    );
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let big = format!(
        "# {}\n",
        "x".repeat(usize::try_from(super::files::CONFIG_FILE_BYTES_MAX).unwrap())
    );
    let err = Fixture::new(&[("config.toml", &big)]).error();
    assert_mentions(&err, &["config.toml", "larger than the limit"]);

    let fixture = Fixture::new(&[
        ("config.toml", "[tenants.acme.teams.s]\nflow = \"f.yaml\"\n"),
        ("f.yaml", &format!("{REPLY_FLOW}{big}")),
    ]);
    assert_mentions(
        &fixture.error(),
        &[
            "f.yaml",
            "larger than the limit",
            "tenants.acme.teams.s.flow",
        ],
    );
}

#[test]
fn yaml_syntax_errors_carry_the_location() {
    let fixture = Fixture::new(&[
        ("config.toml", "[server]\nbundle = \"b.yaml\"\n"),
        ("b.yaml", "tenants:\n  acme: [unclosed\n"),
    ]);
    assert_mentions(&fixture.error(), &["b.yaml", "line"]);
}

mod flows;
mod limits;
mod log_cluster;
