//! The operator console (`/console/`) and the OpenAPI document (`/api/v1/openapi.json`): static
//! files embedded in the binary at build time (the top-level `console/` folder and
//! `docs/openapi.json`), served without auth. The console itself holds no data: it is a page
//! that calls the authenticated `/api/v1` routes with the token the operator enters.
//!
//! Invariants:
//! - Nothing here reads a token, a tenant or the log: these routes are public because they only
//!   hand out files that are the same for everybody.
//! - Every console response carries `Cache-Control: no-cache` (an upgraded server's console is
//!   never mixed with an old cached script) and a strict Content-Security-Policy: scripts, styles
//!   and connections from this origin only, no inline script, no framing.
//! - The page is told which routes this server has ([`ROUTES`]), so that it does not call a route
//!   an older server lacks (and offers the feature as unavailable instead).

use actix_web::http::header;
use actix_web::HttpResponse;

use super::routes::ROUTES;

/// The OpenAPI document of the whole HTTP API, as kept in the repository.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

const INDEX_HTML: &str = include_str!("../../../console/index.html");
const APP_JS: &str = include_str!("../../../console/app.js");
const REPORTS_JS: &str = include_str!("../../../console/reports.js");
const APP_CSS: &str = include_str!("../../../console/app.css");

/// Where the page's `<meta name="tenantry-routes">` takes the route list.
const ROUTES_PLACEHOLDER: &str = "{{ROUTES}}";

/// The console's Content-Security-Policy: everything from this origin, no inline script or
/// style, no plugins, no framing; `data:` images only for the empty favicon.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A console file with its headers.
fn asset(content_type: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONSOLE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// `GET /console`: the console lives under `/console/` (its assets are relative to it).
pub(super) async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

/// `GET /console/`: the page, told which routes this server has.
pub(super) async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", index_html())
}

/// The page with the route list (`METHOD path` pairs, `;`-separated) in its meta tag.
fn index_html() -> String {
    let routes: Vec<String> = ROUTES
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    INDEX_HTML.replace(ROUTES_PLACEHOLDER, &routes.join(";"))
}

/// `GET /console/app.js`.
pub(super) async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS.to_owned())
}

/// `GET /console/reports.js`: the usage chart, connectors list and audit views (loaded before
/// `app.js`, which wires them).
pub(super) async fn reports_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", REPORTS_JS.to_owned())
}

/// `GET /console/app.css`.
pub(super) async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS.to_owned())
}

/// `GET /api/v1/openapi.json`: the OpenAPI document (no auth: it describes, it holds no data).
pub(super) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// Routes that `docs/openapi.json` documents ahead of their registration (a contract's
    /// routes while another branch builds them). Empty when every documented route is served:
    /// the test below fails while a route listed here is in [`ROUTES`], and while a documented
    /// route is in neither.
    const PENDING: &[(&str, &str)] = &[];

    /// The HTTP methods an OpenAPI path item may hold.
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON")
    }

    /// Every (METHOD, path) the document describes.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths is an object");
        let mut out = BTreeSet::new();
        for (path, item) in paths {
            for method in item.as_object().expect("a path item").keys() {
                if METHODS.contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        routes
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn openapi_documents_exactly_the_registered_routes_and_the_pending_ones() {
        let documented = documented(&document());
        let registered = set(ROUTES);
        let pending = set(PENDING);
        assert_eq!(registered.len(), ROUTES.len(), "ROUTES lists a route twice");
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "registered but not in docs/openapi.json: {undocumented:?}"
        );
        let landed: Vec<_> = registered.intersection(&pending).collect();
        assert!(
            landed.is_empty(),
            "registered now: remove them from PENDING: {landed:?}"
        );
        let unexplained: Vec<_> = documented
            .difference(&registered)
            .filter(|r| !pending.contains(*r))
            .collect();
        assert!(
            unexplained.is_empty(),
            "documented but neither registered (ROUTES) nor PENDING: {unexplained:?}"
        );
        let stale: Vec<_> = pending.difference(&documented).collect();
        assert!(stale.is_empty(), "PENDING but not documented: {stale:?}");
    }

    /// Every `$ref` string anywhere in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => out.push(target),
                        _ => refs(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// The value a local JSON pointer (`#/a/b`) names in `doc`.
    fn resolve<'a>(doc: &'a Value, target: &str) -> Option<&'a Value> {
        doc.pointer(target.strip_prefix('#')?)
    }

    #[test]
    fn openapi_is_a_well_formed_document() {
        let doc = document();
        let version = doc["openapi"].as_str().expect("openapi: a version string");
        assert!(
            version.starts_with("3.0.") || version.starts_with("3.1."),
            "{version}"
        );
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for name in ["bearer", "tenant", "team"] {
            assert!(schemes.contains_key(name), "securitySchemes.{name}");
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "the document uses shared components");
        for target in found {
            assert!(
                resolve(&doc, target).is_some(),
                "$ref {target} resolves to nothing"
            );
        }
        for (method, path) in documented(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: operationId"
            );
            // Path templates and their parameters agree.
            let params: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(&doc, p["$ref"].as_str().unwrap_or("#")).unwrap_or(p))
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            let templated: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(params, templated, "{method} {path}: path parameters");
            // /api/v1 routes need the token, except this document itself and the webhooks
            // (signed by the sender instead).
            let public = op["security"].as_array().is_some_and(Vec::is_empty);
            let expected_public = !path.starts_with("/api/v1/")
                || path == "/api/v1/openapi.json"
                || path.starts_with("/api/v1/webhooks/");
            assert_eq!(public, expected_public, "{method} {path}: security");
        }
    }

    #[test]
    fn the_page_names_every_route_and_loads_only_its_own_files() {
        let html = index_html();
        assert!(!html.contains(ROUTES_PLACEHOLDER));
        for (method, path) in ROUTES {
            assert!(
                html.contains(&format!("{method} {path}")),
                "{method} {path}"
            );
        }
        // The CSP forbids inline script: the page's only scripts are the embedded files, the
        // reports first (app.js wires their functions at once).
        assert_eq!(html.matches("<script").count(), 2, "{html}");
        let reports = html.find(r#"<script src="reports.js" defer></script>"#);
        let app = html.find(r#"<script src="app.js" defer></script>"#);
        assert!(reports.is_some() && reports < app, "{html}");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(
            !html.contains("style="),
            "inline styles are refused by the CSP"
        );
    }
}
