//! The route tree: which routes (and so which receivers and aggregation groups) an
//! alert goes to, with the route's path key that Alertmanager builds group keys from.
//!
//! Alertmanager's rules: a route matches when all its matchers do (the root has none);
//! its children are tried in order and the first that matches stops the search unless
//! it has `continue: true`; a matching route whose children all miss is itself the
//! match. Inherited values (`group_by`, timers, receiver) are resolved by the config
//! loader, so every route returned here carries its final settings.

use super::config::Route;
use super::matcher::Matcher;
use crate::rules::labels::Labels;

/// Every route the alert goes to, depth first, most specific first, each with its path
/// key (`{}/{severity="page"}`): the matchers of each route from the root down, sorted
/// and joined as Alertmanager's `Route.Key()` does. The root always matches, so the
/// result is never empty.
pub fn match_routes<'a>(root: &'a Route, labels: &Labels) -> Vec<(&'a Route, String)> {
    let mut found = Vec::new();
    let key = matchers_key(&root.matchers);
    if !visit(root, labels, key, &mut found) {
        // Only possible when the root itself has matchers, which the config loader
        // refuses; the root still receives the alert, as Alertmanager's root would.
        found.push((root, matchers_key(&root.matchers)));
    }
    found
}

/// One level of a route's path key: its matchers sorted (by name, value, operator) and
/// written `{a="1",b=~"2"}`, as Alertmanager's `Matchers.String()`.
pub fn matchers_key(matchers: &[Matcher]) -> String {
    let mut sorted: Vec<&Matcher> = matchers.iter().collect();
    sorted.sort_by(|a, b| {
        (a.name.as_str(), a.value.as_str(), a.op).cmp(&(b.name.as_str(), b.value.as_str(), b.op))
    });
    let parts: Vec<String> = sorted.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

/// Pushes the matches under `route` (or `route` itself) into `found`; false when the
/// route does not match.
fn visit<'a>(
    route: &'a Route,
    labels: &Labels,
    key: String,
    found: &mut Vec<(&'a Route, String)>,
) -> bool {
    if !route.matchers.iter().all(|m| m.matches(labels)) {
        return false;
    }
    let before = found.len();
    for child in &route.routes {
        let child_key = format!("{key}/{}", matchers_key(&child.matchers));
        if visit(child, labels, child_key, found) && !child.continue_matching {
            break;
        }
    }
    if found.len() == before {
        found.push((route, key));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{GroupBy, Route};

    fn route(
        receiver: &str,
        matchers: &[&str],
        continue_matching: bool,
        routes: Vec<Route>,
    ) -> Route {
        Route {
            receiver: receiver.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            continue_matching,
            routes,
            ..Route::default_root()
        }
    }

    /// Routes `labels` and renders each match as `receiver@key`.
    fn check(root: &Route, labels: &[(&str, &str)]) -> Vec<String> {
        match_routes(root, &Labels::from_pairs(labels.iter().copied()))
            .into_iter()
            .map(|(r, key)| format!("{}@{key}", r.receiver))
            .collect()
    }

    /// Alertmanager's documented example tree (configuration.md), nested inheritance
    /// left out since the config loader resolves it.
    fn documented_tree() -> Route {
        route(
            "default-receiver",
            &[],
            false,
            vec![
                route(
                    "database-pager",
                    &[r#"service=~"mysql|cassandra""#],
                    false,
                    vec![],
                ),
                route(
                    "frontend-pager",
                    &[r#"team="frontend""#],
                    false,
                    vec![route(
                        "frontend-critical",
                        &["severity=critical"],
                        false,
                        vec![],
                    )],
                ),
            ],
        )
    }

    /// An alert's labels as written in a test case.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn documented_example() {
        let root = documented_tree();
        let cases: &[(Pairs, &[&str])] = &[
            (&[("alertname", "X")], &["default-receiver@{}"]),
            (
                &[("service", "mysql")],
                &[r#"database-pager@{}/{service=~"mysql|cassandra"}"#],
            ),
            // Anchored: "mysql2" is not "mysql".
            (&[("service", "mysql2")], &["default-receiver@{}"]),
            (
                &[("team", "frontend"), ("severity", "warning")],
                &[r#"frontend-pager@{}/{team="frontend"}"#],
            ),
            (
                &[("team", "frontend"), ("severity", "critical")],
                &[r#"frontend-critical@{}/{team="frontend"}/{severity="critical"}"#],
            ),
            // The first matching sibling wins without `continue`.
            (
                &[("service", "cassandra"), ("team", "frontend")],
                &[r#"database-pager@{}/{service=~"mysql|cassandra"}"#],
            ),
        ];
        for (labels, want) in cases {
            assert_eq!(check(&root, labels), *want, "{labels:?}");
        }
    }

    #[test]
    fn continue_sends_to_every_matching_sibling_until_one_stops() {
        let root = route(
            "default",
            &[],
            false,
            vec![
                route("audit", &[r#"env="prod""#], true, vec![]),
                route("pager", &[r#"severity="page""#], false, vec![]),
                route("never", &[r#"env="prod""#], false, vec![]),
            ],
        );
        assert_eq!(
            check(&root, &[("env", "prod"), ("severity", "page")]),
            [r#"audit@{}/{env="prod"}"#, r#"pager@{}/{severity="page"}"#]
        );
        // `audit` continues; nothing else but `never` matches, and it does.
        assert_eq!(
            check(&root, &[("env", "prod")]),
            [r#"audit@{}/{env="prod"}"#, r#"never@{}/{env="prod"}"#]
        );
        // Only a continuing route matched: the parent is not added on top of it.
        let only_continue = route(
            "default",
            &[],
            false,
            vec![route("audit", &[r#"env="prod""#], true, vec![])],
        );
        assert_eq!(
            check(&only_continue, &[("env", "prod")]),
            [r#"audit@{}/{env="prod"}"#]
        );
    }

    #[test]
    fn key_sorts_the_matchers_of_a_level() {
        let root = route(
            "default",
            &[],
            false,
            vec![route(
                "r",
                &[r#"severity="page""#, r#"env=~"prod|stage""#],
                false,
                vec![],
            )],
        );
        assert_eq!(
            check(&root, &[("env", "prod"), ("severity", "page")]),
            [r#"r@{}/{env=~"prod|stage",severity="page"}"#]
        );
        assert_eq!(
            root.group_by,
            GroupBy::Labels(vec!["alertname".into(), "service".into()])
        );
    }
}
