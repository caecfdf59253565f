//! Inhibition: an alert matching a rule's `target_matchers` is muted while an alert
//! matching its `source_matchers` fires with the same values of the `equal` labels.
//!
//! Alertmanager's rules, from `inhibit/inhibit.go`: only firing source alerts count (a
//! silenced source still inhibits); an absent `equal` label has the empty value on both
//! sides; and when the target matches the rule's source side too, source alerts that
//! also match the target side are not used, so two alerts that each match both sides
//! cannot mute each other (nor an alert itself).

use super::config::InhibitRule;
use crate::rules::labels::Labels;

/// The inhibit rules with, for each, the firing alerts that match its source side.
/// Built once per flush from the alerts firing at that moment.
pub struct Inhibitor<'a> {
    rules: Vec<(&'a InhibitRule, Vec<&'a Labels>)>,
}

impl<'a> Inhibitor<'a> {
    /// `firing`: the labels of every alert firing now, silenced or not.
    pub fn new(
        rules: &'a [InhibitRule],
        firing: impl IntoIterator<Item = &'a Labels>,
    ) -> Inhibitor<'a> {
        let firing: Vec<&'a Labels> = firing.into_iter().collect();
        let rules = rules
            .iter()
            .map(|rule| {
                let sources = firing
                    .iter()
                    .copied()
                    .filter(|labels| all_match(&rule.source_matchers, labels))
                    .collect();
                (rule, sources)
            })
            .collect();
        Inhibitor { rules }
    }

    /// Whether some rule mutes an alert with these labels.
    pub fn is_inhibited(&self, labels: &Labels) -> bool {
        self.rules
            .iter()
            .any(|(rule, sources)| inhibiting(rule, sources, labels).next().is_some())
    }

    /// The firing alerts that mute an alert with these labels (for the API's
    /// `inhibitedBy`), each once, in the order of the rules.
    pub fn inhibited_by(&self, labels: &Labels) -> Vec<&'a Labels> {
        let mut found: Vec<&'a Labels> = Vec::new();
        for (rule, sources) in &self.rules {
            for source in inhibiting(rule, sources, labels) {
                if !found.contains(&source) {
                    found.push(source);
                }
            }
        }
        found
    }
}

/// The sources of `rule` that inhibit `target`.
fn inhibiting<'s, 'a>(
    rule: &'s InhibitRule,
    sources: &'s [&'a Labels],
    target: &'s Labels,
) -> impl Iterator<Item = &'a Labels> + 's {
    let applies = all_match(&rule.target_matchers, target);
    let two_sided = applies && all_match(&rule.source_matchers, target);
    sources.iter().copied().filter(move |source| {
        applies
            && rule
                .equal
                .iter()
                .all(|name| source.get(name).unwrap_or("") == target.get(name).unwrap_or(""))
            && !(two_sided && all_match(&rule.target_matchers, source))
    })
}

fn all_match(matchers: &[super::matcher::Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::matcher::Matcher;

    fn rule(source: &[&str], target: &[&str], equal: &[&str]) -> InhibitRule {
        let parse = |list: &[&str]| list.iter().map(|m| Matcher::parse(m).unwrap()).collect();
        InhibitRule {
            source_matchers: parse(source),
            target_matchers: parse(target),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn source_inhibits_targets_with_equal_labels() {
        let rules = [rule(
            &[r#"severity="critical""#],
            &[r#"severity="warning""#],
            &["service", "cluster"],
        )];
        let critical = labels(&[
            ("alertname", "Down"),
            ("severity", "critical"),
            ("service", "api"),
        ]);
        let firing = [critical.clone()];
        let inhibitor = Inhibitor::new(&rules, firing.iter());
        let cases: &[(&[(&str, &str)], bool)] = &[
            // Same service, no cluster on either side (absent = empty on both).
            (
                &[
                    ("alertname", "Slow"),
                    ("severity", "warning"),
                    ("service", "api"),
                ],
                true,
            ),
            // Another service.
            (
                &[
                    ("alertname", "Slow"),
                    ("severity", "warning"),
                    ("service", "web"),
                ],
                false,
            ),
            // A cluster only on the target: "" != "eu".
            (
                &[
                    ("alertname", "Slow"),
                    ("severity", "warning"),
                    ("service", "api"),
                    ("cluster", "eu"),
                ],
                false,
            ),
            // Not a target.
            (
                &[
                    ("alertname", "Slow"),
                    ("severity", "info"),
                    ("service", "api"),
                ],
                false,
            ),
        ];
        for (target, want) in cases {
            assert_eq!(inhibitor.is_inhibited(&labels(target)), *want, "{target:?}");
        }
        assert_eq!(
            inhibitor.inhibited_by(&labels(&[("severity", "warning"), ("service", "api")])),
            vec![&critical]
        );
        // Nothing fires: nothing is inhibited.
        let quiet = Inhibitor::new(&rules, std::iter::empty());
        assert!(!quiet.is_inhibited(&labels(&[("severity", "warning"), ("service", "api")])));
    }

    #[test]
    fn alerts_matching_both_sides_do_not_inhibit_each_other() {
        // Every `Down` alert is both a source and a target: one cluster's `Down` must
        // not mute another's, nor itself.
        let rules = [rule(
            &[r#"alertname="Down""#],
            &[r#"alertname=~"Down|Slow""#],
            &[],
        )];
        let down_a = labels(&[("alertname", "Down"), ("cluster", "a")]);
        let down_b = labels(&[("alertname", "Down"), ("cluster", "b")]);
        let firing = [down_a.clone(), down_b.clone()];
        let inhibitor = Inhibitor::new(&rules, firing.iter());
        assert!(!inhibitor.is_inhibited(&down_a));
        assert!(!inhibitor.is_inhibited(&down_b));
        // A target that is not a source is muted by them.
        let slow = labels(&[("alertname", "Slow"), ("cluster", "a")]);
        assert!(inhibitor.is_inhibited(&slow));
        assert_eq!(inhibitor.inhibited_by(&slow), vec![&down_a, &down_b]);
    }

    #[test]
    fn a_two_sided_target_is_still_muted_by_a_one_sided_source() {
        // Source: anything in maintenance; target: any alert of the service. A
        // `Maintenance` alert (source only) mutes a target that also matches the source
        // side, because the source does not match the target side.
        let rules = [rule(&[r#"maintenance="true""#], &[r#"service="api""#], &[])];
        let window = labels(&[("alertname", "Maintenance"), ("maintenance", "true")]);
        let firing = [window];
        let inhibitor = Inhibitor::new(&rules, firing.iter());
        assert!(inhibitor.is_inhibited(&labels(&[("service", "api"), ("maintenance", "true")])));
        assert!(inhibitor.is_inhibited(&labels(&[("service", "api")])));
    }
}
